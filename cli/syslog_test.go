package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hacheck/hacheck/internal/testbin"
)

// devLog is where the system log listens; this is the only test in the suite that binds it.
const devLog = "/dev/log"

// bindDevLog listens at /dev/log as journald or rsyslog would, for the test's lifetime. A
// socket left there by an earlier run that died (nothing answers it) is replaced; a system log
// that really listens is left alone and the test skipped, since its records cannot be read
// back from here.
func bindDevLog(t *testing.T) *net.UnixConn {
	t.Helper()
	if fi, err := os.Lstat(devLog); err == nil {
		if fi.Mode().Type() != os.ModeSocket {
			t.Skipf("%s is a %s, not a socket; not touching it", devLog, fi.Mode().Type())
		}
		c, err := net.Dial("unixgram", devLog)
		if err == nil {
			c.Close()
			t.Skipf("a system log listens at %s; its records cannot be read back here", devLog)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Skipf("%s: %v", devLog, err)
		}
		if err := os.Remove(devLog); err != nil {
			t.Skipf("leftover %s: %v", devLog, err)
		}
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: devLog, Net: "unixgram"})
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("bind %s: %v", devLog, err)
		}
		t.Skipf("bind %s: %v", devLog, err)
	}
	ours, err := os.Lstat(devLog)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		// Removed only if it is still the socket bound here.
		if now, err := os.Lstat(devLog); err == nil && os.SameFile(ours, now) {
			os.Remove(devLog)
		}
	})
	return conn
}

// hadown and haup, run as a script runs them, leave their record in the system log with who
// did it, and print nothing.
func TestAuditReachesTheSystemLog(t *testing.T) {
	conn := bindDevLog(t)
	dir := testbin.Dir(t)
	root := t.TempDir()
	// Other tests' commands may log here meanwhile: this test's records carry a name of its own.
	service := "syslog-probe-" + strconv.Itoa(os.Getpid())
	for _, argv := range [][]string{
		{"hadown", "--spool-root", root, "-r", "kernel upgrade", service},
		{"haup", "--spool-root", root, service},
	} {
		out, err := command(dir, argv[0], argv[1:]...).CombinedOutput()
		if err != nil || len(out) != 0 {
			t.Fatalf("%s: %v, output %q; want exit 0 and nothing printed", argv, err, out)
		}
	}
	var records []map[string]any
	buf := make([]byte, 64<<10)
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	for len(records) < 2 {
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("read %s after %d records: %v", devLog, len(records), err)
		}
		datagram := string(buf[:n])
		if !strings.Contains(datagram, `"service":"`+service+`"`) {
			continue
		}
		// <PRI>Mmm dd hh:mm:ss hacheck[pid]: {...}: the local form journald and rsyslog parse,
		// user facility, notice.
		head, record, ok := strings.Cut(datagram, "]: ")
		if !strings.HasPrefix(head, "<13>") || !strings.Contains(head, " hacheck[") || !ok {
			t.Fatalf("datagram %q: want <13>TIMESTAMP hacheck[PID]: RECORD", datagram)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(record), &m); err != nil {
			t.Fatalf("record %q: %v", record, err)
		}
		records = append(records, m)
	}
	for i, want := range []map[string]any{
		{"action": "down", "reason": "kernel upgrade", "origin": "cli", "sudo_user": "tester", "uid": float64(os.Getuid())},
		{"action": "up", "origin": "cli", "sudo_user": "tester", "uid": float64(os.Getuid())},
	} {
		for k, v := range want {
			if records[i][k] != v {
				t.Errorf("record %d: %s = %v, want %v (%v)", i, k, records[i][k], v, records[i])
			}
		}
	}
}

// fillSocket writes datagrams to the unixgram socket at path, which nobody reads, until its
// queue is full (a write waits). A write that succeeds does so at once; the deadline is long
// enough that a busy machine cannot make one that would succeed look like a full queue.
func fillSocket(t *testing.T, path string) {
	t.Helper()
	c, err := net.Dial("unixgram", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; ; i++ {
		if i == 1_000_000 {
			t.Fatalf("%s took a million datagrams without filling up", path)
		}
		c.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte("<13>filler")); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return
			}
			t.Fatal(err)
		}
	}
}

// A system log that stopped reading (hung, or stuck on a full disk) must not hang a
// maintenance command: the record it does not take in time is an error, and the records after
// it are not waited for again.
func TestSystemLogThatNeverReads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	stuck, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close() // never read
	fillSocket(t, path)
	s := &sysLogSender{
		dial:    func(ctx context.Context) (net.Conn, error) { return new(net.Dialer).DialContext(ctx, "unixgram", path) },
		timeout: 50 * time.Millisecond,
		tag:     "hacheck",
	}
	done := make(chan []error, 1)
	go func() {
		var errs []error
		for range 3 {
			errs = append(errs, s.send(`{"action":"down","service":"web"}`))
		}
		done <- errs
	}()
	select {
	case errs := <-done:
		for i, err := range errs {
			if err == nil || !strings.Contains(err.Error(), "not taken within 50ms") || strings.ContainsAny(err.Error(), "\r\n") {
				t.Errorf("record %d: %v; want one line saying the system log did not take it in time", i, err)
			}
		}
	case <-time.After(time.Minute):
		t.Fatal("sending to a system log that never reads hangs")
	}
}

// A host without a system log loses nothing but the record: no error, and the command goes on.
func TestSystemLogAbsent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent")
	s := &sysLogSender{
		dial: func(ctx context.Context) (net.Conn, error) {
			if _, err := new(net.Dialer).DialContext(ctx, "unixgram", path); err != nil {
				return nil, nil // as dialSysLog: nothing listens
			}
			t.Fatal("something listens at a path never bound")
			return nil, nil
		},
		timeout: time.Second,
		tag:     "hacheck",
	}
	if err := s.send("record"); err != nil {
		t.Fatalf("send with no system log: %v", err)
	}
}

// hadown as a script runs it, on a host whose system log stopped reading: the mark is written,
// exit 0, nothing printed; with -v the lost record is said.
func TestHadownWithAStuckSystemLog(t *testing.T) {
	bindDevLog(t) // never read
	fillSocket(t, devLog)
	dir := testbin.Dir(t)
	root := t.TempDir()
	for _, tt := range []struct {
		args   []string
		output string
	}{
		{[]string{"-r", "kernel upgrade", "web"}, ""},
		{[]string{"-v", "-r", "kernel upgrade", "api"}, "warning: the system log did not take the record: system log: not taken within 2s"},
	} {
		cmd := command(dir, "hadown", append([]string{"--spool-root", root}, tt.args...)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		hung := time.AfterFunc(time.Minute, func() { cmd.Process.Kill() })
		err := cmd.Wait()
		if !hung.Stop() {
			t.Fatalf("hadown %v hangs on a system log that never reads", tt.args)
		}
		if err != nil || (tt.output == "" && out.Len() != 0) || !strings.Contains(out.String(), tt.output) {
			t.Errorf("hadown %v: %v, output %q; want exit 0 and %q", tt.args, err, out.String(), tt.output)
		}
	}
	if marks := spoolEntries(t, root); len(marks) != 2 {
		t.Errorf("spool holds %v; want the marks for api and web", marks)
	}
}
