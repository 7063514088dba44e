package cli

import (
	"encoding/json"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
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
	dir := binDir(t)
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
