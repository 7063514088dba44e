package check

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgCluster runs PostgreSQL's own programs for a test: as the postgres account when the test
// runs as root (the server refuses root), in a directory that account may use.
type pgCluster struct {
	bin  string // PostgreSQL's bin directory
	dir  string
	cred *syscall.Credential
}

func newPGCluster(t *testing.T) *pgCluster {
	t.Helper()
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) == 0 {
		msg := "PostgreSQL's server programs (initdb) are not installed"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	c := &pgCluster{bin: filepath.Dir(matches[len(matches)-1])}
	dir, err := os.MkdirTemp("", "hacheck-pg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	c.dir = dir
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root, and no postgres account to run PostgreSQL as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func (c *pgCluster) cmd(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(c.bin, name), args...)
	cmd.Dir = c.dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LC_ALL=C"}
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	return cmd
}

func (c *pgCluster) run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := c.cmd(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

// start runs the server of data directory sub on a free loopback port until the test ends.
func (c *pgCluster) start(t *testing.T, sub string) int {
	t.Helper()
	port := closedPort(t)
	cmd := c.cmd("postgres", "-D", filepath.Join(c.dir, sub), "-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=", "-c", "fsync=off")
	var out syncBuilder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGQUIT) // immediate shutdown: the data is thrown away
		<-exited
	})
	// Polling an external process is the one wait that has no event to block on.
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("postgres %s exited:\n%s", sub, out.String())
		default:
		}
		// The port opens before the server takes logins ("the database system is starting up").
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable", port))
		if err == nil {
			_ = conn.Close(ctx)
			cancel()
			return port
		}
		cancel()
		if time.Now().After(deadline) {
			t.Fatalf("postgres %s took no login within 30s (%v):\n%s", sub, err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A real replica, streaming from a primary this test starts: the role and lag checks against
// the states the machine's single server cannot be in.
func TestPostgresAgainstAReplica(t *testing.T) {
	c := newPGCluster(t)
	c.run(t, "initdb", "-D", filepath.Join(c.dir, "primary"), "-U", "postgres", "--auth=trust", "-N")
	hba := "host all all 127.0.0.1/32 trust\nhost replication all 127.0.0.1/32 trust\n"
	if err := os.WriteFile(filepath.Join(c.dir, "primary", "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		t.Fatal(err)
	}
	if c.cred != nil {
		if err := os.Chown(filepath.Join(c.dir, "primary", "pg_hba.conf"), int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	primary := c.start(t, "primary")
	c.run(t, "pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(primary), "-U", "postgres",
		"-D", filepath.Join(c.dir, "replica"), "-R", "-X", "stream", "-c", "fast")
	replica := c.start(t, "replica")

	// A replica has a replay time once it has replayed a transaction from the primary.
	ctx := checkCtx(t, 30*time.Second)
	conn, err := pgx.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable", primary))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE hacheck_replayed (x int)"); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close(ctx)
	rconn, err := pgx.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable", replica))
	if err != nil {
		t.Fatal(err)
	}
	defer rconn.Close(context.Background())
	for {
		var replayed bool
		if err := rconn.QueryRow(ctx, "SELECT pg_last_xact_replay_timestamp() IS NOT NULL").Scan(&replayed); err != nil {
			t.Fatal(err)
		}
		if replayed {
			break
		}
		time.Sleep(20 * time.Millisecond) // replication is another process: poll, bounded by ctx
	}

	runProtocolCases(t, NewRegistry(Options{PostgresUsername: "postgres"}), []protocolCase{
		{name: "primary", protocol: "postgres", port: primary, query: "primary", wantCode: 200, outcome: OutcomeOK, msg: regexp.MustCompile(`: primary$`)},
		{name: "replica", protocol: "postgres", port: replica, query: "replica", wantCode: 200, outcome: OutcomeOK, msg: regexp.MustCompile(`^PostgreSQL login OK in \d+\.\d{3}s: replica$`)},
		{name: "any role", protocol: "postgres", port: replica, wantCode: 200, outcome: OutcomeOK, msg: regexp.MustCompile(`: replica$`)},
		{name: "primary asked of a replica", protocol: "postgres", port: replica, query: "primary", wantCode: 500, outcome: OutcomeUpstreamFail, msg: regexp.MustCompile(`^PostgreSQL is a replica, not a primary$`)},
		{name: "within max_lag", protocol: "postgres", port: replica, query: "replica", rawQuery: "max_lag=3600", wantCode: 200, outcome: OutcomeOK, msg: regexp.MustCompile(`: replica, \d+\.\d{3}s behind$`)},
		{name: "beyond max_lag", protocol: "postgres", port: replica, query: "replica", rawQuery: "max_lag=0", wantCode: 500, outcome: OutcomeUpstreamFail, msg: regexp.MustCompile(`^PostgreSQL replica is \d+\.\d{3}s behind, more than max_lag 0s$`)},
	})
}
