package cli

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hacheck/hacheck/internal/testbin"
)

// Scripts written for the Python hadown, run as their own code runs them: no terminal, no new
// flags, and a running server that would refuse (web's instance is the last usable server of
// its backend, found through HACHECK_PORT). The Python hadown wrote the mark, printed nothing
// and exited 0; so must this one, or the callers leave dying instances in rotation.

// scriptEnv is the environment of a caller's process: the spool and server of this test, and
// no terminal or SUDO_USER.
func scriptEnv(root, serverPort string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SUDO_USER=") && !strings.HasPrefix(kv, "HACHECK_") {
			env = append(env, kv)
		}
	}
	return append(env, "HACHECK_SPOOL_ROOT="+root, "HACHECK_PORT="+serverPort)
}

// nerve-tools' updown_service runs subprocess.check_call([hadown, service]) (with "-P", port
// after the service for one instance) and haup the same way; its integration test runs
// "hadown all" and "haup all". check_call raises on a non-zero exit.
func TestNerveToolsCheckCall(t *testing.T) {
	dir := testbin.Dir(t)
	serverPort := lastServerLB(t)
	steps := []struct {
		argv  []string
		marks []string
	}{
		{[]string{"hadown", "web"}, []string{"web"}},
		{[]string{"hadown", "web", "-P", "8080"}, []string{"web", "web:8080"}},
		{[]string{"haup", "web", "-P", "8080"}, []string{"web"}},
		{[]string{"haup", "web"}, nil},
		{[]string{"hadown", "all"}, []string{"all"}},
		{[]string{"haup", "all"}, nil},
	}
	root := t.TempDir()
	for _, step := range steps {
		cmd := exec.Command(filepath.Join(dir, step.argv[0]), step.argv[1:]...)
		cmd.Env = scriptEnv(root, serverPort)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil || out.Len() != 0 {
			t.Fatalf("check_call(%q): %v, output %q; want exit 0 and nothing printed", step.argv, err, out.String())
		}
		if got := spoolEntries(t, root); !slices.Equal(got, step.marks) {
			t.Fatalf("after %q: marks %q, want %q", step.argv, got, step.marks)
		}
	}
}

// PaaSTA's Kubernetes preStop hook: ["/bin/sh", "-c", "/usr/bin/hadown <registrations>; sleep
// 31"], registrations joined by spaces, run as the container's user for a pod that is going
// away whatever hadown says.
func TestPaastaPreStopHook(t *testing.T) {
	dir := testbin.Dir(t)
	serverPort := lastServerLB(t)
	root := t.TempDir()
	hook := filepath.Join(dir, "hadown") + " web universal.credit; echo hadown exited $?"
	cmd := exec.Command("/bin/sh", "-c", hook)
	cmd.Env = scriptEnv(root, serverPort)
	out, err := cmd.CombinedOutput()
	if err != nil || string(out) != "hadown exited 0\n" {
		t.Fatalf("preStop hook: %v, output %q; want hadown to exit 0 silently", err, out)
	}
	if got := spoolEntries(t, root); !slices.Equal(got, []string{"universal.credit", "web"}) {
		t.Fatalf("marks %q, want both registrations", got)
	}
	// The same hook asking for the guard is refused, nothing written: the server was found.
	root = t.TempDir()
	cmd = exec.Command("/bin/sh", "-c", filepath.Join(dir, "hadown")+" --guard web; echo hadown exited $?")
	cmd.Env = scriptEnv(root, serverPort)
	if out, _ := cmd.CombinedOutput(); !strings.HasSuffix(string(out), "hadown exited 4\n") || len(spoolEntries(t, root)) != 0 {
		t.Fatalf("hadown --guard from the hook: %q, marks %q; want exit 4 and nothing written", out, spoolEntries(t, root))
	}
}

// The Python commands shared one option parser: every command took -r, -e and -p (the server's
// port), and ignored those it had no use for. A wrapper that passes the same options to haup as
// to hadown, or the server's port to every command, must run unchanged.
func TestPythonOptionsOnEveryCommand(t *testing.T) {
	dir := testbin.Dir(t)
	root := t.TempDir()
	steps := []struct {
		argv []string
		code int
		out  string
	}{
		{[]string{"hadown", "-p", "6666", "-r", "deploy", "-e", "4102444800", "web"}, 0, ""},
		{[]string{"hastatus", "-p", "6666", "-r", "deploy", "web"}, 1, "DOWN\tweb\tdeploy\n"},
		{[]string{"hashowdowned", "-p", "6666", "-r", "deploy", "-e", "4102444800"}, 0, "web\t"},
		{[]string{"haup", "-p", "6666", "-r", "deploy", "-e", "4102444800", "web"}, 0, ""},
		{[]string{"hastatus", "-p", "6666", "web"}, 0, "UP\tweb\n"},
	}
	for _, step := range steps {
		cmd := exec.Command(filepath.Join(dir, step.argv[0]), step.argv[1:]...)
		cmd.Env = scriptEnv(root, "6666")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		if exit, ok := err.(*exec.ExitError); ok {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != step.code || !strings.HasPrefix(stdout.String(), step.out) || stderr.Len() != 0 {
			t.Fatalf("%q = exit %d, stdout %q, stderr %q; want exit %d, stdout starting %q, no stderr",
				step.argv, code, stdout.String(), stderr.String(), step.code, step.out)
		}
	}
}
