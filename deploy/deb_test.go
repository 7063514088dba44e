package deploy_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// debFiles is every path the package installs, directories included.
var debFiles = []string{
	"/etc/", "/etc/hacheck/", "/etc/hacheck/config.yml",
	"/lib/", "/lib/systemd/", "/lib/systemd/system/",
	"/lib/systemd/system/hacheck.service", "/lib/systemd/system/hacheck.socket",
	"/usr/", "/usr/bin/", "/usr/bin/hacheck",
	"/usr/bin/hadown", "/usr/bin/halist", "/usr/bin/hashowdowned", "/usr/bin/hastatus", "/usr/bin/haup",
	"/usr/lib/", "/usr/lib/sysusers.d/", "/usr/lib/sysusers.d/hacheck.conf",
	"/usr/lib/tmpfiles.d/", "/usr/lib/tmpfiles.d/hacheck.conf",
	"/usr/share/", "/usr/share/bash-completion/", "/usr/share/bash-completion/completions/",
	"/usr/share/bash-completion/completions/hacheck", "/usr/share/bash-completion/completions/hadown",
	"/usr/share/bash-completion/completions/halist", "/usr/share/bash-completion/completions/hashowdowned",
	"/usr/share/bash-completion/completions/hastatus", "/usr/share/bash-completion/completions/haup",
	"/usr/share/doc/", "/usr/share/doc/hacheck/",
	"/usr/share/doc/hacheck/changelog.Debian.gz", "/usr/share/doc/hacheck/copyright",
	"/usr/share/doc/hacheck/examples/", "/usr/share/doc/hacheck/examples/haproxy.cfg",
	"/usr/share/doc/hacheck/examples/alertmanager.yml", "/usr/share/doc/hacheck/examples/prometheus.yml",
	"/usr/share/hacheck/", "/usr/share/hacheck/alerts/", "/usr/share/hacheck/alerts/hacheck.rules.yml",
	"/usr/share/hacheck/dashboards/", "/usr/share/hacheck/dashboards/hacheck.json",
	"/usr/share/lintian/", "/usr/share/lintian/overrides/", "/usr/share/lintian/overrides/hacheck",
	"/usr/share/man/", "/usr/share/man/man1/", "/usr/share/man/man1/hacheck.1.gz",
	"/usr/share/man/man1/hadown.1.gz", "/usr/share/man/man1/halist.1.gz", "/usr/share/man/man1/hashowdowned.1.gz",
	"/usr/share/man/man1/hastatus.1.gz", "/usr/share/man/man1/haup.1.gz",
}

// buildDeb runs deploy/build-deb into dir with the extra environment and returns the package's path.
func buildDeb(t *testing.T, dir string, env ...string) string {
	t.Helper()
	cmd := exec.Command("./build-deb", "-out", dir)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("build-deb: %v\n%s", err, stderr.String())
	}
	path := strings.TrimSpace(string(out))
	if filepath.Dir(path) != dir || !strings.HasSuffix(path, ".deb") {
		t.Fatalf("build-deb printed %q, want a .deb in %s", out, dir)
	}
	return path
}

// runOK runs a command and returns its output; any failure fails the test.
func runOK(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// repoVersion is the VERSION file and the commit checked out, as build-deb stamps them.
func repoVersion(t *testing.T) (version, commit string) {
	t.Helper()
	data, err := os.ReadFile("../VERSION")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data)), strings.TrimSpace(runOK(t, "git", "rev-parse", "HEAD"))
}

// TestDebianPackage builds the package twice (same bytes), runs lintian on it (no error, no
// warning), checks its files, control fields, conffiles, version and units; with CI=true or
// HACHECK_DEB_INSTALL=1 it then installs it for real (see testDebInstall).
func TestDebianPackage(t *testing.T) {
	requireTool(t, "dpkg-deb")
	lintian := requireTool(t, "lintian")
	version, commit := repoVersion(t)

	deb := buildDeb(t, t.TempDir())
	again := buildDeb(t, t.TempDir())
	if wantName := fmt.Sprintf("hacheck_%s-1_", version); !strings.HasPrefix(filepath.Base(deb), wantName) {
		t.Errorf("package %s, want a name starting %s", filepath.Base(deb), wantName)
	}
	a, errA := os.ReadFile(deb)
	b, errB := os.ReadFile(again)
	if errA != nil || errB != nil || !bytes.Equal(a, b) {
		t.Errorf("two builds of one commit differ (%d and %d bytes): not reproducible", len(a), len(b))
	}

	t.Run("lintian", func(t *testing.T) {
		out, err := exec.Command(lintian, "--fail-on", "error,warning", "--display-level", ">=warning", deb).CombinedOutput()
		var tags []string
		for line := range strings.SplitSeq(string(out), "\n") {
			if regexp.MustCompile(`^[EWIPXO]: `).MatchString(line) {
				tags = append(tags, line)
			}
		}
		if err != nil || len(tags) > 0 {
			t.Errorf("lintian: %v\n%s", err, out)
		}
	})

	t.Run("contents", func(t *testing.T) {
		listing := runOK(t, "dpkg-deb", "--contents", deb)
		var got []string
		modes := map[string]string{}
		for line := range strings.SplitSeq(strings.TrimSpace(listing), "\n") {
			f := strings.Fields(line)
			if len(f) < 6 {
				t.Fatalf("dpkg-deb --contents line %q", line)
			}
			name := strings.TrimPrefix(f[5], ".")
			got = append(got, name)
			modes[name] = f[0] + " " + f[1]
			if len(f) == 8 && f[6] == "->" {
				modes[name] += " -> " + f[7]
			}
		}
		slices.Sort(got)
		want := slices.Sorted(slices.Values(debFiles))
		if !slices.Equal(got, want) {
			t.Errorf("files:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		for path, mode := range map[string]string{
			"/usr/bin/hacheck":                   "-rwxr-xr-x root/root",
			"/usr/bin/hadown":                    "lrwxrwxrwx root/root -> hacheck",
			"/usr/share/man/man1/haup.1.gz":      "lrwxrwxrwx root/root -> hacheck.1.gz",
			"/etc/hacheck/config.yml":            "-rw-r--r-- root/root", // root:hacheck 0640 by statoverride
			"/lib/systemd/system/hacheck.socket": "-rw-r--r-- root/root",
		} {
			if got := modes[path]; strings.Replace(got, "l---------", "lrwxrwxrwx", 1) != mode {
				t.Errorf("%s: %q, want %q", path, got, mode)
			}
		}
	})

	t.Run("control", func(t *testing.T) {
		fields := runOK(t, "dpkg-deb", "--field", deb, "Package", "Version", "Architecture", "Maintainer", "Section")
		for _, want := range []string{"Package: hacheck\n", "Version: " + version + "-1\n", "Section: net\n"} {
			if !strings.Contains(fields, want) {
				t.Errorf("control fields:\n%s\nwant %q", fields, want)
			}
		}
		ctrl := t.TempDir()
		runOK(t, "dpkg-deb", "--control", deb, ctrl)
		conffiles, err := os.ReadFile(filepath.Join(ctrl, "conffiles"))
		if err != nil || string(conffiles) != "/etc/hacheck/config.yml\n" {
			t.Errorf("conffiles %q (%v), want only /etc/hacheck/config.yml", conffiles, err)
		}
		for _, script := range []string{"postinst", "prerm", "postrm"} {
			if st, err := os.Stat(filepath.Join(ctrl, script)); err != nil || st.Mode()&0o111 == 0 {
				t.Errorf("maintainer script %s: %v", script, err)
			}
		}
	})

	root := t.TempDir()
	runOK(t, "dpkg-deb", "--extract", deb, root)
	t.Run("version", func(t *testing.T) {
		out := runOK(t, filepath.Join(root, "usr/bin/hacheck"), "version")
		if want := fmt.Sprintf("hacheck %s (commit %s", version, commit); !strings.HasPrefix(out, want) {
			t.Errorf("hacheck version: %q, want it to start %q", out, want)
		}
	})

	t.Run("man page", func(t *testing.T) {
		page := runOK(t, "sh", "-c", `gzip -dc "$1"`, "sh", filepath.Join(root, "usr/share/man/man1/hacheck.1.gz"))
		help := runOK(t, filepath.Join(root, "usr/bin/hacheck"), "down", "--help")
		// The page is the help made literal for roff: every flag of hadown is on it.
		for _, flag := range regexp.MustCompile(`--[a-z-]+`).FindAllString(help, -1) {
			if !strings.Contains(page, strings.ReplaceAll(flag, "-", `\-`)) {
				t.Errorf("man page lacks %s, which hacheck down --help lists", flag)
			}
		}
	})

	t.Run("systemd units", func(t *testing.T) {
		analyze := requireTool(t, "systemd-analyze")
		// verify wants ExecStart's binary to exist: the extracted one stands in for
		// /usr/bin/hacheck. Documentation=man:hacheck(1) is checked after a real install.
		units := t.TempDir()
		for _, name := range []string{"hacheck.service", "hacheck.socket"} {
			data, err := os.ReadFile(filepath.Join(root, "lib/systemd/system", name))
			if err != nil {
				t.Fatal(err)
			}
			data = bytes.ReplaceAll(data, []byte("/usr/bin/hacheck"), []byte(filepath.Join(root, "usr/bin/hacheck")))
			if err := os.WriteFile(filepath.Join(units, name), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if out, err := exec.Command(analyze, "verify", "--man=no", filepath.Join(units, "hacheck.socket"), filepath.Join(units, "hacheck.service")).CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
		// The exposure level the README states; the hardening may only get better.
		out, _ := exec.Command(analyze, "security", "--offline=true", filepath.Join(units, "hacheck.service")).CombinedOutput()
		m := regexp.MustCompile(`Overall exposure level for hacheck.service: ([0-9.]+)`).FindSubmatch(out)
		if m == nil {
			t.Fatalf("systemd-analyze security --offline=true: no exposure level in\n%s", out)
		}
		if level, _ := strconv.ParseFloat(string(m[1]), 64); level > 1.4 {
			t.Errorf("exposure level %.1f, want 1.4 or better (the README's figure)", level)
		}
	})

	if os.Getenv("CI") != "true" && os.Getenv("HACHECK_DEB_INSTALL") != "1" {
		t.Log("not installing the package: set HACHECK_DEB_INSTALL=1 (as root, on a machine you can spare) or CI=true")
		return
	}
	if os.Geteuid() != 0 {
		t.Fatal("installing the package needs root")
	}
	upgrade := buildDeb(t, t.TempDir(), "HACHECK_VERSION="+version+"+test1")
	testDebInstall(t, deb, upgrade, version)
}
