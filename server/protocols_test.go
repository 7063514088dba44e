package server

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hacheck/hacheck/config"
)

// reachablePort is port when something listens on 127.0.0.1:port, else a closed port: the
// test below runs either way, against the real database when there is one.
func reachablePort(t *testing.T, port int) string {
	t.Helper()
	if conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second); err == nil {
		_ = conn.Close()
		return strconv.Itoa(port)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// Database checks that fail (unknown account, nothing listening, wrong role) answer, log and
// report their failure without the configured credentials, wherever hacheck shows a check.
func TestDatabaseCredentialsNeverShown(t *testing.T) {
	const user, pw = "hunter2_user", "hunter2-password"
	var logs lockedBuffer
	ts := startServer(t, func(c *config.Config) {
		c.PostgresUsername, c.PostgresPassword = user, pw
		c.MySQLUsername, c.MySQLPassword = user, pw
	}, func(s *Server) { s.verbose = true })
	ts.SetLogger(zerolog.New(&logs).Level(zerolog.DebugLevel))

	pg, my := reachablePort(t, 5432), reachablePort(t, 3306)
	var shown strings.Builder
	for _, path := range []string{
		"/postgres/db/" + pg + "/", "/postgres/db/" + pg + "/replica?max_lag=1", "/postgres/db/" + reachablePort(t, 1) + "/",
		"/mysql/db/" + my + "/", "/mysql/db/" + my + "/primary",
	} {
		code, body, _ := ts.get(t, path)
		if code == 200 {
			t.Errorf("GET %s = 200 %q with an account that does not exist", path, body)
		}
		shown.WriteString(body)
	}
	for _, path := range []string{"/status", "/status/count", "/recent", "/metrics"} {
		_, body, _ := ts.get(t, path)
		shown.WriteString(body)
	}
	logs.mu.Lock()
	logged := logs.buf.String()
	logs.mu.Unlock()
	shown.WriteString(logged)
	if strings.Contains(shown.String(), "hunter2") {
		t.Errorf("a credential was shown:\n%s", shown.String())
	}
	if !strings.Contains(logged, "postgres") {
		t.Errorf("the checks were not logged, so the test shows nothing:\n%s", logged)
	}
}
