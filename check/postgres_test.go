package check

import (
	"math"
	"regexp"
	"strings"
	"testing"
	"time"
)

// postgresPort is the machine's PostgreSQL, with trust authentication on 127.0.0.1.
const postgresPort = 5432

func TestPostgresAgainstPostgreSQL(t *testing.T) {
	port := requireLocal(t, postgresPort, "PostgreSQL (trust auth, user postgres)")
	const secretUser, secretPassword = "hacheck_secret_user_4711", "pw-secret-4711"
	// Settings from the environment must not aim the check elsewhere or change what it asks.
	t.Setenv("PGHOST", "127.0.0.2")
	t.Setenv("PGPORT", "1")
	t.Setenv("PGTARGETSESSIONATTRS", "standby")
	t.Setenv("PGSSLMODE", "require")
	t.Setenv("PGOPTIONS", "-c default_transaction_read_only=on")

	tests := []struct {
		name     string
		opts     Options
		query    string
		rawQuery string
		wantCode int
		outcome  Outcome
		msg      *regexp.Regexp
	}{
		{"login", Options{PostgresUsername: "postgres"}, "", "", 200, OutcomeOK, regexp.MustCompile(`^PostgreSQL login OK in \d+\.\d{3}s: primary$`)},
		{"primary", Options{PostgresUsername: "postgres", PostgresDatabase: "postgres"}, "primary", "", 200, OutcomeOK, regexp.MustCompile(`^PostgreSQL login OK in \d+\.\d{3}s: primary$`)},
		{"max_lag ignored on a primary", Options{PostgresUsername: "postgres"}, "primary", "max_lag=0", 200, OutcomeOK, regexp.MustCompile(`: primary$`)},
		{"replica asked of a primary", Options{PostgresUsername: "postgres"}, "replica", "", 500, OutcomeUpstreamFail, regexp.MustCompile(`^PostgreSQL is a primary, not a replica$`)},
		{"replica with lag asked of a primary", Options{PostgresUsername: "postgres"}, "replica", "max_lag=5", 500, OutcomeUpstreamFail, regexp.MustCompile(`^PostgreSQL is a primary, not a replica$`)},
		{"any other query is a plain login", Options{PostgresUsername: "postgres"}, "anything", "", 200, OutcomeOK, regexp.MustCompile(`^PostgreSQL login OK in \d+\.\d{3}s: primary$`)},
		{"host pairs ignored", Options{PostgresUsername: "postgres"}, "", "host=127.0.0.2&port=1&dbname=nosuch&user=x", 200, OutcomeOK, regexp.MustCompile(`: primary$`)},
		{"unknown role", Options{PostgresUsername: secretUser, PostgresPassword: secretPassword}, "", "", 500, OutcomeUpstreamFail, regexp.MustCompile(`^FATAL: role "<postgres_username>" does not exist \(SQLSTATE 28000\)$`)},
		{"unknown database", Options{PostgresUsername: "postgres", PostgresDatabase: "hacheck_no_such_db"}, "", "", 500, OutcomeUpstreamFail, regexp.MustCompile(`^FATAL: database "hacheck_no_such_db" does not exist \(SQLSTATE 3D000\)$`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NewRegistry(tt.opts)["postgres"].Check(checkCtx(t, 10*time.Second), Target{Service: "db", Port: port, Query: tt.query, RawQuery: tt.rawQuery})
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if got.Code != tt.wantCode || got.Outcome != tt.outcome || !tt.msg.MatchString(got.Message) {
				t.Errorf("Check = %+v, want code %d, outcome %s, message matching %s", got, tt.wantCode, tt.outcome, tt.msg)
			}
			if strings.Contains(got.Message, secretUser) || strings.Contains(got.Message, secretPassword) {
				t.Errorf("message %q contains a credential", got.Message)
			}
		})
	}
}

// These cases need no database: they fail before a server could answer.
func TestPostgresWithoutServer(t *testing.T) {
	const secretUser, secretPassword = "hacheck_secret_user_4711", "pw-secret-4711"
	creds := Options{PostgresUsername: secretUser, PostgresPassword: secretPassword}
	tests := []struct {
		name     string
		opts     Options
		port     int
		query    string
		rawQuery string
		timeout  time.Duration
		wantCode int
		outcome  Outcome
		msg      *regexp.Regexp
	}{
		{"no username", Options{PostgresPassword: "secret"}, closedPort(t), "", "", 5 * time.Second, 500, OutcomeError, regexp.MustCompile(`^No PostgreSQL username in config file$`)},
		{"refused", creds, closedPort(t), "", "", 5 * time.Second, 503, OutcomeRefused, regexp.MustCompile(`^dial tcp 127\.0\.0\.1:\d+: connect: connection refused after \d+\.\d{3}s$`)},
		{"server never answers", creds, silentPort(t), "", "", 200 * time.Millisecond, 503, OutcomeTimeout, regexp.MustCompile(` after \d+\.\d{3}s$`)},
		{"any other query still connects", creds, closedPort(t), "leader", "", 5 * time.Second, 503, OutcomeRefused, regexp.MustCompile(`connection refused after \d+\.\d{3}s$`)},
		{"bad max_lag with any other query", creds, closedPort(t), "leader", "max_lag=soon", 5 * time.Second, 400, OutcomeError, regexp.MustCompile(`^postgres check: bad max_lag "soon": want seconds, 0 or more$`)},
		{"negative max_lag", creds, closedPort(t), "replica", "max_lag=-1", 5 * time.Second, 400, OutcomeError, regexp.MustCompile(`^postgres check: bad max_lag "-1": want seconds, 0 or more$`)},
		{"max_lag not a number", creds, closedPort(t), "replica", "max_lag=soon", 5 * time.Second, 400, OutcomeError, regexp.MustCompile(`^postgres check: bad max_lag "soon"`)},
		{"max_lag NaN", creds, closedPort(t), "replica", "max_lag=NaN", 5 * time.Second, 400, OutcomeError, regexp.MustCompile(`^postgres check: bad max_lag "NaN"`)},
		{"max_lag empty", creds, closedPort(t), "replica", "max_lag=", 5 * time.Second, 400, OutcomeError, regexp.MustCompile(`^postgres check: bad max_lag ""`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NewRegistry(tt.opts)["postgres"].Check(checkCtx(t, tt.timeout), Target{Service: "db", Port: tt.port, Query: tt.query, RawQuery: tt.rawQuery})
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if got.Code != tt.wantCode || got.Outcome != tt.outcome || !tt.msg.MatchString(got.Message) {
				t.Errorf("Check = %+v, want code %d, outcome %s, message matching %s", got, tt.wantCode, tt.outcome, tt.msg)
			}
			if strings.Contains(got.Message, secretUser) || strings.Contains(got.Message, secretPassword) || strings.ContainsAny(got.Message, "\r\n") {
				t.Errorf("message %q contains a credential or spans lines", got.Message)
			}
		})
	}
}

// The role query shared by postgres and mysql: only primary and replica ask for a role, any
// other word is the plain login the older hacheck's HAProxy lines expect, and max_lag is
// checked whatever the word.
func TestParseRoleQuery(t *testing.T) {
	tests := []struct {
		query, rawQuery string
		want            string
		maxLag          float64
		bad             string
	}{
		{"", "", "", -1, ""},
		{"primary", "", "primary", -1, ""},
		{"replica", "max_lag=2.5", "replica", 2.5, ""},
		{"anything", "", "", -1, ""},
		{"master", "", "", -1, ""},
		{"Primary", "", "", -1, ""},
		{"anything", "max_lag=0", "", 0, ""},
		{"anything", "max_lag=-1", "", 0, `bad max_lag "-1": want seconds, 0 or more`},
		{"replica", "max_lag=Inf", "", 0, `bad max_lag "Inf": want seconds, 0 or more`},
		{"", "max_lag=%zz", "", 0, `bad query string: invalid URL escape "%zz"`},
	}
	for _, tt := range tests {
		t.Run(tt.query+"?"+tt.rawQuery, func(t *testing.T) {
			want, maxLag, bad := parseRoleQuery(tt.query, tt.rawQuery)
			if want != tt.want || maxLag != tt.maxLag || bad != tt.bad {
				t.Errorf("parseRoleQuery(%q, %q) = %q, %g, %q; want %q, %g, %q", tt.query, tt.rawQuery, want, maxLag, bad, tt.want, tt.maxLag, tt.bad)
			}
		})
	}
}

func FuzzParseRoleQuery(f *testing.F) {
	for _, seed := range [][2]string{{"", ""}, {"replica", "max_lag=1.5"}, {"anything", "max_lag=x"}, {"primary", "max_lag=%zz&max_lag=2"}} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, query, rawQuery string) {
		want, maxLag, bad := parseRoleQuery(query, rawQuery)
		if bad != "" {
			return
		}
		if want != "" && want != query || want != "" && want != "primary" && want != "replica" {
			t.Errorf("parseRoleQuery(%q, %q) wants role %q", query, rawQuery, want)
		}
		if maxLag != -1 && !(maxLag >= 0 && !math.IsInf(maxLag, 0)) {
			t.Errorf("parseRoleQuery(%q, %q) max_lag = %g", query, rawQuery, maxLag)
		}
	})
}

// The role and lag judgement shared by postgres and mysql, over the states a test server
// cannot easily be put in (a replica, a lagging one).
func TestRoleResult(t *testing.T) {
	lag := func(s float64) *float64 { return &s }
	tests := []struct {
		name     string
		role     string
		want     string
		lag      *float64
		maxLag   float64
		wantCode int
		msg      string
	}{
		{"any role, primary", "primary", "", nil, -1, 200, "DB login OK in 0.001s: primary"},
		{"any role, replica", "replica", "", lag(3), -1, 200, "DB login OK in 0.001s: replica"},
		{"replica wanted", "replica", "replica", lag(3), -1, 200, "DB login OK in 0.001s: replica"},
		{"replica within lag", "replica", "replica", lag(2.5), 5, 200, "DB login OK in 0.001s: replica, 2.500s behind"},
		{"replica at lag", "replica", "replica", lag(5), 5, 200, "DB login OK in 0.001s: replica, 5.000s behind"},
		{"replica beyond lag", "replica", "replica", lag(5.001), 5, 500, "DB replica is 5.001s behind, more than max_lag 5s"},
		{"replica, lag unknown", "replica", "replica", nil, 0.5, 500, "DB replica lag unknown (max_lag 0.5s)"},
		{"any role, lagging replica", "replica", "", lag(60), 5, 500, "DB replica is 60.000s behind, more than max_lag 5s"},
		{"primary wanted, replica", "replica", "primary", lag(0), -1, 500, "DB is a replica, not a primary"},
		{"replica wanted, primary", "primary", "replica", nil, 5, 500, "DB is a primary, not a replica"},
		{"primary, lag ignored", "primary", "primary", nil, 0, 200, "DB login OK in 0.001s: primary"},
		{"lag in the future (clock skew)", "replica", "replica", lag(-2), 5, 200, "DB login OK in 0.001s: replica, -2.000s behind"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := roleResult("DB", tt.role, tt.want, tt.lag, tt.maxLag, time.Millisecond)
			if got.Code != tt.wantCode || got.Message != tt.msg {
				t.Errorf("roleResult = %d %q, want %d %q", got.Code, got.Message, tt.wantCode, tt.msg)
			}
			wantOutcome := OutcomeOK
			if tt.wantCode != 200 {
				wantOutcome = OutcomeUpstreamFail
			}
			if got.Outcome != wantOutcome {
				t.Errorf("outcome %s, want %s", got.Outcome, wantOutcome)
			}
		})
	}
}
