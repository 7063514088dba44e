// Command debpkg builds hacheck's Debian package from a checkout of the repository: it compiles
// hacheck, writes the man page and the Debian changelog, and packs them with the files of
// deploy/ into dist/hacheck_<version>_<arch>.deb, whose path it prints. deploy/build-deb runs it.
//
// The same commit builds the same bytes: file times are the commit's time (or
// SOURCE_DATE_EPOCH), the binary is built with -trimpath and without the toolchain's VCS stamp,
// and nothing depends on the machine or the clock.
package main

import (
	"bytes"
	"compress/gzip"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"github.com/goreleaser/nfpm/v2/files"
)

// debianRevision is the packaging's own revision: the package of upstream version V is V-1.
const debianRevision = "1"

const maintainer = "hacheck developers <dev@hacheck.invalid>"

// The names the binary answers to besides hacheck.
var multiCallNames = []string{"haup", "hadown", "hastatus", "halist", "hashowdowned"}

// upstreamVersion is what dpkg accepts as the upstream part of a version that has a revision.
var upstreamVersion = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`)

type build struct {
	root    string    // repository checkout
	version string    // upstream version, e.g. 0.1.0
	commit  string    // 40 hex digits, "-dirty" appended when tracked files were changed
	arch    string    // GOARCH
	when    time.Time // every time stamp in the package
	work    string    // scratch directory
}

func main() {
	root := flag.String("root", ".", "repository checkout to build from")
	out := flag.String("out", "", "directory for the package (default <root>/dist)")
	version := flag.String("version", os.Getenv("HACHECK_VERSION"), "upstream version (default: the VERSION file; env HACHECK_VERSION)")
	arch := flag.String("arch", envOr("GOARCH", runtime.GOARCH), "GOARCH to build for")
	flag.Parse()
	path, err := run(*root, *out, *version, *arch)
	if err != nil {
		fmt.Fprintf(os.Stderr, "build-deb: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(path)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func run(root, out, version, arch string) (string, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return "", err
	}
	b := &build{root: root, arch: arch}
	if b.version, err = readVersion(root, version); err != nil {
		return "", err
	}
	if b.commit, b.when, err = gitState(root); err != nil {
		return "", err
	}
	if b.work, err = os.MkdirTemp("", "hacheck-deb-"); err != nil {
		return "", err
	}
	defer os.RemoveAll(b.work)

	info, err := b.packageInfo()
	if err != nil {
		return "", err
	}
	if out == "" {
		out = filepath.Join(root, "dist")
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", err
	}
	pkg, err := nfpm.Get("deb")
	if err != nil {
		return "", err
	}
	if err := nfpm.PrepareForPackager(info, "deb"); err != nil {
		return "", err
	}
	target := filepath.Join(out, pkg.ConventionalFileName(info))
	var buf bytes.Buffer
	if err := pkg.Package(info, &buf); err != nil {
		return "", fmt.Errorf("pack %s: %w", target, err)
	}
	// Written whole and renamed, so a failed build never leaves a truncated package behind.
	tmp := target + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return "", err
	}
	return target, os.Rename(tmp, target)
}

// readVersion is the override if given, else the VERSION file at the root.
func readVersion(root, override string) (string, error) {
	v := strings.TrimSpace(override)
	if v == "" {
		data, err := os.ReadFile(filepath.Join(root, "VERSION"))
		if err != nil {
			return "", fmt.Errorf("read the version: %w", err)
		}
		v = strings.TrimSpace(string(data))
	}
	if !upstreamVersion.MatchString(v) {
		return "", fmt.Errorf("version %q: want digits, letters and . + ~ only, starting with a digit (e.g. 0.1.0)", v)
	}
	return v, nil
}

// gitState is the commit checked out at root and the time every file in the package carries:
// SOURCE_DATE_EPOCH if set, else the commit's time.
func gitState(root string) (commit string, when time.Time, err error) {
	git := func(args ...string) (string, error) {
		cmd := exec.Command("git", append([]string{"-C", root}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
		}
		return strings.TrimSpace(string(out)), nil
	}
	if commit, err = git("rev-parse", "HEAD"); err != nil {
		return "", time.Time{}, fmt.Errorf("%w (build-deb builds a git checkout)", err)
	}
	if changes, err := git("status", "--porcelain", "--untracked-files=no"); err != nil {
		return "", time.Time{}, err
	} else if changes != "" {
		commit += "-dirty"
	}
	epoch := os.Getenv("SOURCE_DATE_EPOCH")
	if epoch == "" {
		if epoch, err = git("log", "-1", "--format=%ct", "HEAD"); err != nil {
			return "", time.Time{}, err
		}
	}
	secs, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: not a number of seconds", epoch)
	}
	return commit, time.Unix(secs, 0).UTC(), nil
}

// compile builds hacheck for the target with the version and commit stamped in.
func (b *build) compile(dst, goarch string) error {
	const pkg = "github.com/hacheck/hacheck/internal/buildinfo"
	ldflags := fmt.Sprintf("-s -w -X %s.version=%s -X %s.commit=%s", pkg, b.version, pkg, b.commit)
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", dst, ".")
	cmd.Dir = b.root
	// Without cgo the binary is static: it needs no libc of a particular version on the
	// target. GOFLAGS from the caller (-race, -cover) must not change what is shipped.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch, "GOFLAGS=-mod=readonly")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	return nil
}

// debArch is the Debian name of a GOARCH.
func debArch(goarch string) (string, error) {
	switch goarch {
	case "amd64", "arm64", "riscv64", "s390x":
		return goarch, nil
	case "386":
		return "i386", nil
	case "arm":
		return "armhf", nil
	case "ppc64le":
		return "ppc64el", nil
	}
	return "", fmt.Errorf("GOARCH %q: no Debian architecture known for it", goarch)
}

// gzipped writes data gzip-compressed at the best level with no name and no time in the header,
// as Debian wants documentation compressed.
func gzipped(path string, data []byte) error {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return err
	}
	if _, err := zw.Write(data); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

func (b *build) packageInfo() (*nfpm.Info, error) {
	arch, err := debArch(b.arch)
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(b.work, "hacheck")
	if err := b.compile(bin, b.arch); err != nil {
		return nil, err
	}
	// The man page is the binary's own --help, so it cannot drift from it. A cross build runs
	// a binary for this machine to read it.
	helpBin := bin
	if b.arch != runtime.GOARCH {
		helpBin = filepath.Join(b.work, "hacheck-host")
		if err := b.compile(helpBin, runtime.GOARCH); err != nil {
			return nil, err
		}
	}
	page, err := manPage(helpBin, b.version, b.when)
	if err != nil {
		return nil, err
	}
	if err := gzipped(filepath.Join(b.work, "hacheck.1.gz"), page); err != nil {
		return nil, err
	}
	if err := gzipped(filepath.Join(b.work, "changelog.Debian.gz"), b.changelog()); err != nil {
		return nil, err
	}
	// The bash completion is the binary's own script too; bash-completion loads a command's
	// file by the command's name, so each multi-call name links to it.
	completion, err := exec.Command(helpBin, "completion", "bash", "--path", "/usr/bin/hacheck").Output()
	if err != nil {
		return nil, fmt.Errorf("hacheck completion bash: %w", err)
	}
	if err := os.WriteFile(filepath.Join(b.work, "hacheck.bash-completion"), completion, 0o644); err != nil {
		return nil, err
	}

	deploy := func(name string) string { return filepath.Join(b.root, "deploy", name) }
	file := func(src, dst string, mode os.FileMode) *files.Content {
		return &files.Content{Source: src, Destination: dst, FileInfo: &files.ContentFileInfo{Mode: mode, Owner: "root", Group: "root"}}
	}
	contents := files.Contents{
		file(bin, "/usr/bin/hacheck", 0o755),
		file(deploy("hacheck.service"), "/lib/systemd/system/hacheck.service", 0o644),
		file(deploy("hacheck.socket"), "/lib/systemd/system/hacheck.socket", 0o644),
		file(deploy("hacheck.sysusers"), "/usr/lib/sysusers.d/hacheck.conf", 0o644),
		file(deploy("hacheck.tmpfiles"), "/usr/lib/tmpfiles.d/hacheck.conf", 0o644),
		file(filepath.Join(b.root, "dashboards", "hacheck.json"), "/usr/share/hacheck/dashboards/hacheck.json", 0o644),
		file(filepath.Join(b.root, "alerts", "hacheck.rules.yml"), "/usr/share/hacheck/alerts/hacheck.rules.yml", 0o644),
		file(deploy("haproxy.cfg"), "/usr/share/doc/hacheck/examples/haproxy.cfg", 0o644),
		file(deploy("prometheus.yml"), "/usr/share/doc/hacheck/examples/prometheus.yml", 0o644),
		file(deploy("alertmanager.example.yml"), "/usr/share/doc/hacheck/examples/alertmanager.yml", 0o644),
		file(deploy("debian/copyright"), "/usr/share/doc/hacheck/copyright", 0o644),
		file(deploy("debian/lintian-overrides"), "/usr/share/lintian/overrides/hacheck", 0o644),
		file(filepath.Join(b.work, "changelog.Debian.gz"), "/usr/share/doc/hacheck/changelog.Debian.gz", 0o644),
		file(filepath.Join(b.work, "hacheck.1.gz"), "/usr/share/man/man1/hacheck.1.gz", 0o644),
		file(filepath.Join(b.work, "hacheck.bash-completion"), "/usr/share/bash-completion/completions/hacheck", 0o644),
	}
	// The config may come to hold mysql_password and remote_spool_token: the postinst makes it
	// root:hacheck 0640 with dpkg-statoverride, once the group exists.
	conf := file(deploy("config.example.yml"), "/etc/hacheck/config.yml", 0o644)
	conf.Type = files.TypeConfig
	contents = append(contents, conf)
	for _, name := range multiCallNames {
		contents = append(contents,
			&files.Content{Source: "hacheck", Destination: "/usr/bin/" + name, Type: files.TypeSymlink},
			&files.Content{Source: "hacheck.1.gz", Destination: "/usr/share/man/man1/" + name + ".1.gz", Type: files.TypeSymlink},
			&files.Content{Source: "hacheck", Destination: "/usr/share/bash-completion/completions/" + name, Type: files.TypeSymlink})
	}

	script := func(name string) string { return deploy("debian/" + name) }
	info := &nfpm.Info{
		Name:          "hacheck",
		Arch:          arch,
		Platform:      "linux",
		Version:       b.version,
		VersionSchema: "none",
		Release:       debianRevision,
		Section:       "net",
		Priority:      "optional",
		Maintainer:    maintainer,
		Homepage:      "https://github.com/hacheck/hacheck",
		Description: `health-check proxy for HAProxy with a maintenance spool
 hacheck answers HAProxy's agent and HTTP health checks for the services of
 this host: from the maintenance marks operators set with hadown and haup,
 and from a cached real check (HTTP, HTTPS, TCP, MySQL) of the local
 service, so many load balancers checking one host cost it one check.
 .
 The package runs it as a hardened systemd service on port 3333 (socket
 activated, so checks are queued rather than refused across a restart),
 with Prometheus metrics, alert rules and a Grafana dashboard.`,
		MTime: b.when,
		Overridables: nfpm.Overridables{
			Contents: contents,
			Scripts: nfpm.Scripts{
				PostInstall: script("postinst"),
				PreRemove:   script("prerm"),
				PostRemove:  script("postrm"),
			},
		},
	}
	info.Deb.Compression = "gzip"
	for _, c := range info.Contents {
		if c.Source != "" && c.Type != files.TypeSymlink {
			if _, err := os.Stat(c.Source); err != nil {
				return nil, fmt.Errorf("package file: %w", err)
			}
		}
	}
	return nfpm.WithDefaults(info), nil
}

// changelog is the Debian changelog: one entry for the version being built, naming the commit.
func (b *build) changelog() []byte {
	return []byte(fmt.Sprintf(`hacheck (%s-%s) unstable; urgency=medium

  * hacheck %s, built from commit
    %s.

 -- %s  %s
`, b.version, debianRevision, b.version, b.commit, maintainer, b.when.Format(time.RFC1123Z)))
}

var errNoCommands = errors.New("no command list in hacheck --help")
