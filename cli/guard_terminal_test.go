package cli

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/hacheck/hacheck/internal/testbin"
	"github.com/hacheck/hacheck/lb"
)

// lastServerLB is a running server's /lb answer in which web:8080 is the last usable server of
// its backend: the disruption guard refuses to take it down.
func lastServerLB(t *testing.T) string {
	t.Helper()
	return lbServer(t, func(service string) lb.Snapshot {
		now := unix(time.Now())
		return lb.Snapshot{Service: service, WindowSeconds: 30, Now: now, Servers: []lb.Server{
			{Port: 8080, Node: "lb1", Server: "be_web/app1", State: "UP", LastSeen: now, Weight: 1, TotalWeight: 1},
		}}
	})
}

// The guard protects people, not scripts: on at a terminal unless --force, off for a script
// unless --guard.
func TestGuardProtectsPeopleNotScripts(t *testing.T) {
	port := lastServerLB(t)
	tests := []struct {
		name        string
		interactive bool
		flags       []string
		code        int
		written     bool
	}{
		{"person", true, nil, exitRefused, false},
		{"person --force", true, []string{"--force"}, exitOK, true},
		{"person --guard", true, []string{"--guard"}, exitRefused, false},
		{"script", false, nil, exitOK, true},
		{"script --guard", false, []string{"--guard"}, exitRefused, false},
		{"script --force", false, []string{"--force"}, exitOK, true},
		{"--guard --force contradict", false, []string{"--guard", "--force"}, exitUsage, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRunner(t)
			r.interactive = tt.interactive
			args := append([]string{"-p", port, "-P", "8080"}, tt.flags...)
			res := r.run("hadown", append(args, "web")...)
			if res.code != tt.code || res.stdout != "" {
				t.Fatalf("= %+v, want exit %d and nothing on stdout", res, tt.code)
			}
			if tt.code == exitOK && res.stderr != "" {
				t.Errorf("stderr %q on success, want nothing", res.stderr)
			}
			if tt.code != exitOK && strings.Count(res.stderr, "\n") != 1 {
				t.Errorf("stderr %q, want one line", res.stderr)
			}
			if written := len(r.marks(t)) == 1; written != tt.written {
				t.Errorf("mark written: %v, want %v", written, tt.written)
			}
			if written := len(r.records) == 1; written != tt.written {
				t.Errorf("audit records %q, want one only when written", r.records)
			}
		})
	}
}

// The guard's policy decided by what the process really is connected to: hadown under a
// pseudo-terminal (a person) refuses the last server; the same argv from a script (pipes, no
// terminal) writes the mark, says nothing and exits 0, as the Python hadown did.
func TestGuardAtARealTerminal(t *testing.T) {
	dir := testbin.Dir(t)
	port := lastServerLB(t)
	root := t.TempDir()
	args := []string{"--spool-root", root, "-p", port, "-P", "8080", "web"}

	cmd := command(dir, "hadown", args...)
	tty, err := pty.Start(cmd)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no pseudo-terminal: %v", err)
		}
		t.Skipf("no pseudo-terminal here: %v", err)
	}
	out := readTTY(tty)
	err = cmd.Wait()
	tty.Close()
	if cmd.ProcessState.ExitCode() != exitRefused || !strings.Contains(string(<-out), "would have no usable server left") {
		t.Fatalf("hadown at a terminal: exit %d (%v), want %d and the refusal", cmd.ProcessState.ExitCode(), err, exitRefused)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Fatalf("the refused hadown wrote %d entries", len(entries))
	}

	cmd = command(dir, "hadown", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || stdout.Len()+stderr.Len() != 0 {
		t.Fatalf("hadown from a script: %v, stdout %q stderr %q; want exit 0 and nothing printed", err, stdout.String(), stderr.String())
	}
	if _, err := os.Stat(root + "/web:8080"); err != nil {
		t.Fatalf("hadown from a script wrote no mark: %v", err)
	}
}

// A person who pipes hadown's output (hadown web | tee log) is still at a terminal: stdin is one.
func TestGuardWithOnlyStdinATerminal(t *testing.T) {
	dir := testbin.Dir(t)
	port := lastServerLB(t)
	root := t.TempDir()
	ptmx, tty, err := pty.Open()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no pseudo-terminal: %v", err)
		}
		t.Skipf("no pseudo-terminal here: %v", err)
	}
	defer ptmx.Close()
	defer tty.Close()
	cmd := command(dir, "hadown", "--spool-root", root, "-p", port, "-P", "8080", "web")
	var out bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, &out, &out
	err = cmd.Run()
	if cmd.ProcessState.ExitCode() != exitRefused || !strings.Contains(out.String(), "would have no usable server left") {
		t.Fatalf("hadown with a terminal on stdin: %v, %q; want exit %d and the refusal", err, out.String(), exitRefused)
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Fatalf("the refused hadown wrote %d entries", len(entries))
	}
}

// readTTY reads everything the command writes to its terminal; on Linux the read ends with EIO
// once the command has exited and closed its side.
func readTTY(tty *os.File) <-chan []byte {
	out := make(chan []byte, 1)
	go func() {
		var buf bytes.Buffer
		_, err := io.Copy(&buf, tty)
		if err != nil && !errors.Is(err, syscall.EIO) && !errors.Is(err, os.ErrClosed) {
			buf.WriteString("\nread error: " + err.Error())
		}
		out <- buf.Bytes()
	}()
	return out
}
