package check

import (
	"database/sql"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

func TestMySQLAgainstMariaDB(t *testing.T) {
	port := requireMariaDB(t)
	const wrongPassword = "not-the-password-4711"
	tests := []struct {
		name     string
		opts     Options
		wantCode int
		outcome  Outcome
		msg      *regexp.Regexp
	}{
		{"root with empty password", Options{MySQLUsername: "root"}, 200, OutcomeOK, regexp.MustCompile(`^MySQL login OK in \d+\.\d{3}s$`)},
		{"wrong password", Options{MySQLUsername: "root", MySQLPassword: wrongPassword}, 500, OutcomeUpstreamFail, regexp.MustCompile(`^Error 1045 \(28000\): Access denied for user '<mysql_username>'@'[^']+' \(using password: YES\)$`)},
		{"unknown user", Options{MySQLUsername: "hacheck_no_such_user", MySQLPassword: wrongPassword}, 500, OutcomeUpstreamFail, regexp.MustCompile(`Access denied for user '<mysql_username>'`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NewRegistry(tt.opts)["mysql"].Check(checkCtx(t, 10*time.Second), Target{Service: "db", Port: port})
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if got.Code != tt.wantCode || got.Outcome != tt.outcome || !tt.msg.MatchString(got.Message) {
				t.Errorf("Check = %+v, want code %d, outcome %s, message matching %s", got, tt.wantCode, tt.outcome, tt.msg)
			}
			if strings.Contains(got.Message, wrongPassword) || strings.Contains(got.Message, "'"+tt.opts.MySQLUsername+"'") {
				t.Errorf("message %q contains a credential", got.Message)
			}
		})
	}
}

func TestMySQLRolesAgainstMariaDB(t *testing.T) {
	port := requireMariaDB(t)
	root := Options{MySQLUsername: "root"}
	runProtocolCases(t, NewRegistry(root), []protocolCase{
		{name: "primary", protocol: "mysql", port: port, query: "primary", wantCode: 200, outcome: OutcomeOK, msg: regexp.MustCompile(`^MySQL login OK in \d+\.\d{3}s: primary$`)},
		{name: "any role with max_lag", protocol: "mysql", port: port, rawQuery: "max_lag=5", wantCode: 200, outcome: OutcomeOK, msg: regexp.MustCompile(`^MySQL login OK in \d+\.\d{3}s: primary$`)},
		{name: "replica asked of a primary", protocol: "mysql", port: port, query: "replica", wantCode: 500, outcome: OutcomeUpstreamFail, msg: regexp.MustCompile(`^MySQL is a primary, not a replica$`)},
		{name: "replica with lag asked of a primary", protocol: "mysql", port: port, query: "replica", rawQuery: "max_lag=1", wantCode: 500, outcome: OutcomeUpstreamFail, msg: regexp.MustCompile(`^MySQL is a primary, not a replica$`)},
		{name: "any other query is a plain login", protocol: "mysql", port: port, query: "anything", wantCode: 200, outcome: OutcomeOK, msg: regexp.MustCompile(`^MySQL login OK in \d+\.\d{3}s$`)},
		{name: "bad max_lag with any other query", protocol: "mysql", port: port, query: "anything", rawQuery: "max_lag=soon", wantCode: 400, outcome: OutcomeError, msg: regexp.MustCompile(`^mysql check: bad max_lag "soon": want seconds, 0 or more$`)},
		{name: "bad max_lag", protocol: "mysql", port: port, query: "replica", rawQuery: "max_lag=Inf", wantCode: 400, outcome: OutcomeError, msg: regexp.MustCompile(`^mysql check: bad max_lag "Inf"`)},
	})
}

// A server that replicates from nothing has an unknown lag: SHOW REPLICA STATUS (or its older
// name) runs and returns no channel.
func TestMySQLReplicaLagOfAPrimary(t *testing.T) {
	port := requireMariaDB(t)
	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr = "root", "tcp", localAddr(port)
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(connector)
	t.Cleanup(func() { _ = db.Close() })
	lag, err := replicaLag(checkCtx(t, 10*time.Second), db)
	if err != nil || lag != nil {
		t.Errorf("replicaLag = %v, %v; want nil, nil", lag, err)
	}
}

// These cases need no database: they fail before a server could answer.
func TestMySQLWithoutServer(t *testing.T) {
	tests := []struct {
		name     string
		opts     Options
		port     int
		timeout  time.Duration
		wantCode int
		outcome  Outcome
		msg      *regexp.Regexp
	}{
		{"no username", Options{MySQLPassword: "secret"}, closedPort(t), 5 * time.Second, 500, OutcomeError, regexp.MustCompile(`^No MySQL username/password in config file$`)},
		{"refused", Options{MySQLUsername: "root"}, closedPort(t), 5 * time.Second, 503, OutcomeRefused, regexp.MustCompile(`connection refused after \d+\.\d{3}s$`)},
		{"server never greets", Options{MySQLUsername: "root"}, silentPort(t), 200 * time.Millisecond, 503, OutcomeTimeout, regexp.MustCompile(` after \d+\.\d{3}s$`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NewRegistry(tt.opts)["mysql"].Check(checkCtx(t, tt.timeout), Target{Service: "db", Port: tt.port})
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if got.Code != tt.wantCode || got.Outcome != tt.outcome || !tt.msg.MatchString(got.Message) {
				t.Errorf("Check = %+v, want code %d, outcome %s, message matching %s", got, tt.wantCode, tt.outcome, tt.msg)
			}
		})
	}
}
