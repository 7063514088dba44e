package check

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// startReadOnlyMariaDB runs a MariaDB of the test's own, read-only (what a replica is), on a
// free loopback port with root's password empty, until the test ends.
func startReadOnlyMariaDB(t *testing.T) int {
	t.Helper()
	install, err1 := exec.LookPath("mariadb-install-db")
	server, err2 := exec.LookPath("mariadbd")
	if err2 != nil {
		server, err2 = "/usr/sbin/mariadbd", nil
		if _, err := os.Stat(server); err != nil {
			err2 = err
		}
	}
	if err1 != nil || err2 != nil {
		msg := "MariaDB's server programs are not installed"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	dir, err := os.MkdirTemp("", "hacheck-mariadb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	var asUser []string
	if os.Geteuid() == 0 {
		// mariadbd refuses to run as root unless told whom to be; it drops to that account.
		asUser = []string{"--user=mysql"}
		if out, err := exec.Command("chown", "mysql:", dir).CombinedOutput(); err != nil {
			t.Fatalf("chown mysql %s: %v\n%s", dir, err, out)
		}
	}
	data := filepath.Join(dir, "data")
	args := append([]string{"--no-defaults", "--datadir=" + data, "--auth-root-authentication-method=normal", "--skip-test-db"}, asUser...)
	if out, err := exec.Command(install, args...).CombinedOutput(); err != nil {
		t.Fatalf("mariadb-install-db: %v\n%s", err, out)
	}
	port := closedPort(t)
	args = append([]string{"--no-defaults", "--datadir=" + data, "--port=" + strconv.Itoa(port), "--bind-address=127.0.0.1",
		"--socket=" + filepath.Join(dir, "sock"), "--pid-file=" + filepath.Join(dir, "pid"), "--read-only",
		"--skip-name-resolve", "--innodb-buffer-pool-size=8M"}, asUser...)
	cmd := exec.Command(server, args...)
	var out syncBuilder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // its data is thrown away
		<-exited
	})
	// Polling an external process is the one wait that has no event to block on.
	checker := NewRegistry(Options{MySQLUsername: "root"})["mysql"]
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("mariadbd exited:\n%s", out.String())
		default:
		}
		res, err := checker.Check(checkCtx(t, 2*time.Second), Target{Service: "db", Port: port})
		if err == nil && res.Code == 200 {
			return port
		}
		if time.Now().After(deadline) {
			t.Fatalf("mariadbd took no login within 30s (%+v):\n%s", res, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A read-only server is a replica; one that replicates from nothing has no lag to bound.
func TestMySQLRolesOfAReadOnlyServer(t *testing.T) {
	port := startReadOnlyMariaDB(t)
	runProtocolCases(t, NewRegistry(Options{MySQLUsername: "root"}), []protocolCase{
		{name: "login", protocol: "mysql", port: port, wantCode: 200, outcome: OutcomeOK, msg: regexp.MustCompile(`^MySQL login OK in \d+\.\d{3}s$`)},
		{name: "replica", protocol: "mysql", port: port, query: "replica", wantCode: 200, outcome: OutcomeOK, msg: regexp.MustCompile(`^MySQL login OK in \d+\.\d{3}s: replica$`)},
		{name: "primary asked of a replica", protocol: "mysql", port: port, query: "primary", wantCode: 500, outcome: OutcomeUpstreamFail, msg: regexp.MustCompile(`^MySQL is a replica, not a primary$`)},
		{name: "max_lag of a replica of nothing", protocol: "mysql", port: port, query: "replica", rawQuery: "max_lag=5", wantCode: 500, outcome: OutcomeUpstreamFail, msg: regexp.MustCompile(`^MySQL replica lag unknown \(max_lag 5s\)$`)},
	})
}
