package deploy_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testDebInstall installs deb for real with dpkg: the user, spool and config it sets up, the
// installed commands, the installed binary serving checks as user hacheck with the installed
// config, an upgrade to upgrade (version+"+test1") that keeps an edited conffile and the marks,
// a removal that keeps the marks, and a purge that removes the config.
func testDebInstall(t *testing.T, deb, upgrade, version string) {
	const (
		mark   = "hacheck-package-test"
		reason = "package test"
		spool  = "/var/spool/hacheck"
		conf   = "/etc/hacheck/config.yml"
	)
	dpkg := func(args ...string) {
		t.Helper()
		cmd := exec.Command("dpkg", args...)
		// No terminal and no input: a conffile question would fail the test, not hang it.
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("dpkg %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	exists := func(path string) bool {
		_, err := os.Lstat(path)
		return err == nil
	}
	hastatus := func() (int, string) {
		t.Helper()
		out, err := exec.Command("/usr/bin/hastatus", mark).CombinedOutput()
		var exit *exec.ExitError
		switch {
		case err == nil:
			return 0, string(out)
		case errors.As(err, &exit):
			return exit.ExitCode(), string(out)
		}
		t.Fatalf("hastatus: %v", err)
		return 0, ""
	}
	wantDown := func(when string) {
		t.Helper()
		if code, out := hastatus(); code != 1 || out != "DOWN\t"+mark+"\t"+reason+"\n" {
			t.Errorf("%s: hastatus %s: exit %d, %q; want exit 1 and the mark", when, mark, code, out)
		}
	}
	configOwner := func(when string) {
		t.Helper()
		st, err := os.Stat(conf)
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		g, err := user.LookupGroup("hacheck")
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		sys := st.Sys().(*syscall.Stat_t)
		if st.Mode().Perm() != 0o640 || sys.Uid != 0 || strconv.Itoa(int(sys.Gid)) != g.Gid {
			t.Errorf("%s: %s is %v uid %d gid %d, want 0640 root:hacheck", when, conf, st.Mode(), sys.Uid, sys.Gid)
		}
	}

	exec.Command("dpkg", "--purge", "hacheck").Run() // what an interrupted run left
	t.Cleanup(func() {
		exec.Command("dpkg", "--purge", "hacheck").Run()
		os.Remove(spool + "/" + mark)
		os.Remove(spool + "/.hacheck.lock")
		os.Remove(spool) // only if nothing else is in it
	})

	dpkg("--install", deb)
	u, err := user.Lookup("hacheck")
	if err != nil {
		t.Fatalf("after install: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if st, err := os.Stat(spool); err != nil || !st.IsDir() || st.Mode().Perm() != 0o755 || st.Sys().(*syscall.Stat_t).Uid != uint32(uid) {
		t.Errorf("spool after install: %v, %v; want a 0755 directory of user hacheck", st, err)
	}
	configOwner("after install")
	if out := runOK(t, "/usr/bin/hacheck", "version"); !strings.HasPrefix(out, "hacheck "+version+" (commit ") {
		t.Errorf("installed hacheck version: %q", out)
	}
	runOK(t, "/usr/bin/hadown", "-r", reason, mark)
	wantDown("after hadown")
	if analyze, err := exec.LookPath("systemd-analyze"); err == nil {
		if out, err := exec.Command(analyze, "verify", "/lib/systemd/system/hacheck.socket", "/lib/systemd/system/hacheck.service").CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("systemd-analyze verify of the installed units: %v\n%s", err, out)
		}
	}

	t.Run("installed binary serves as user hacheck", func(t *testing.T) {
		port := freePort(t)
		cmd := exec.Command("/usr/bin/hacheck", "serve", "-c", conf, "-p", strconv.Itoa(port))
		cmd.SysProcAttr = childAttr()
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		out := &syncBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		}()
		get := func(path string) (int, string, error) {
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
			if err != nil {
				return 0, "", err
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			return resp.StatusCode, string(body), err
		}
		waitFor(t, 20*time.Second, "the installed hacheck to answer", func() (bool, string) {
			code, body, err := get("/spool/" + mark + "/0/status")
			return code == http.StatusServiceUnavailable && strings.Contains(body, reason),
				fmt.Sprintf("%d %q %v\n%s", code, body, err, tail(out.String(), 2000))
		})
		if code, body, err := get("/spool/some-other-service/0/status"); code != http.StatusOK {
			t.Errorf("a service without a mark: %d %q %v", code, body, err)
		}
	})

	// An operator's edit of the conffile survives an upgrade, and so do the marks.
	f, err := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	const edit = "\n# edited by the package test\ncache_time: 5\n"
	if _, err := f.WriteString(edit); err != nil {
		t.Fatal(err)
	}
	f.Close()
	dpkg("--install", upgrade)
	if data, err := os.ReadFile(conf); err != nil || !strings.HasSuffix(string(data), edit) {
		t.Errorf("after the upgrade %s lost the edit (%v):\n%s", conf, err, data)
	}
	configOwner("after the upgrade")
	if out := runOK(t, "/usr/bin/hacheck", "version"); !strings.HasPrefix(out, "hacheck "+version+"+test1 (") {
		t.Errorf("hacheck version after the upgrade: %q", out)
	}
	wantDown("after the upgrade")

	dpkg("--remove", "hacheck")
	if exists("/usr/bin/hacheck") || !exists(conf) || !exists(spool+"/"+mark) {
		t.Errorf("after remove: binary %v, config %v, mark %v; want the binary gone, the config and the mark kept",
			exists("/usr/bin/hacheck"), exists(conf), exists(spool+"/"+mark))
	}
	dpkg("--purge", "hacheck")
	if exists("/etc/hacheck") || !exists(spool+"/"+mark) {
		t.Errorf("after purge: /etc/hacheck %v, mark %v; want the config gone and the mark kept", exists("/etc/hacheck"), exists(spool+"/"+mark))
	}
	if err := exec.Command("dpkg-statoverride", "--list", conf).Run(); err == nil {
		t.Errorf("after purge the statoverride of %s is still there", conf)
	}

	t.Run("without systemd's tools", func(t *testing.T) {
		// As in a container without systemd: the postinst creates the user and the spool
		// with useradd and install -d.
		os.Remove(spool + "/" + mark)
		if err := os.RemoveAll(spool); err != nil {
			t.Fatal(err)
		}
		runOK(t, "userdel", "hacheck")
		exec.Command("groupdel", "hacheck").Run() // gone with the user where USERGROUPS_ENAB
		cmd := exec.Command("dpkg", "--install", deb)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "PATH="+pathWithout(t, "systemd-sysusers", "systemd-tmpfiles"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("dpkg --install without systemd's tools: %v\n%s", err, out)
		}
		if strings.Contains(string(out), "Creating user") { // systemd-sysusers' words
			t.Errorf("systemd-sysusers ran though hidden:\n%s", out)
		}
		u, err := user.Lookup("hacheck")
		if err != nil {
			t.Fatalf("no user hacheck: %v", err)
		}
		if u.HomeDir != spool {
			t.Errorf("user hacheck's home %s, want %s", u.HomeDir, spool)
		}
		st, err := os.Stat(spool)
		if err != nil || !st.IsDir() || st.Mode().Perm() != 0o755 || strconv.Itoa(int(st.Sys().(*syscall.Stat_t).Uid)) != u.Uid {
			t.Errorf("spool: %v, %v; want a 0755 directory of user hacheck", st, err)
		}
		configOwner("installed without systemd's tools")
		dpkg("--purge", "hacheck")
		if exists(spool) {
			t.Errorf("purge left the empty spool %s", spool)
		}
	})
}

// pathWithout is a PATH holding every command of the usual PATH but the ones named, as links in
// a temporary directory.
func pathWithout(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		entries, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if slices.Contains(names, e.Name()) {
				continue
			}
			// The first directory holding a name wins, as in a PATH lookup.
			if err := os.Symlink(filepath.Join(d, e.Name()), filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrExist) {
				t.Fatal(err)
			}
		}
	}
	return dir
}
