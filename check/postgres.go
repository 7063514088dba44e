package check

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DefaultPostgresDatabase is the database postgres checks log in to when none is configured.
const DefaultPostgresDatabase = "postgres"

// maxPostgresMessage bounds one message from the server. The check's replies are a few bytes;
// only a server's error or parameter messages come near a KiB.
const maxPostgresMessage = 1 << 20

// postgresChecker is the "postgres" protocol: log in to 127.0.0.1:<port> with the configured
// account, ask whether the server is in recovery (a replica), and quit.
type postgresChecker struct {
	username, password, database string
}

func newPostgresChecker(opts Options) *postgresChecker {
	db := opts.PostgresDatabase
	if db == "" {
		db = DefaultPostgresDatabase
	}
	return &postgresChecker{username: opts.PostgresUsername, password: opts.PostgresPassword, database: db}
}

// roleQuery is what a role check asks: whether the server replays WAL, and how long ago the
// last replayed transaction committed on the primary (NULL on a primary, or on a replica
// that has replayed none yet). That lag grows while the primary is idle: max_lag is a bound
// on how old a replica's data may be, not on its distance to the primary.
const roleQuery = "SELECT pg_is_in_recovery(), EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8"

// Check answers 200 "PostgreSQL login OK in <s>s: primary" (or "replica") when the login
// works and, with query "primary" or "replica", the server has that role (any other query asks
// for none); with ?max_lag=<seconds>, a replica must also be at most that far behind. It
// answers 500 with the server's error when the server refuses the login or the query, 500 when
// the role or lag is not the one asked for, 500 "No PostgreSQL username in config file" when
// none is configured, 400 for a max_lag it does not understand, and 503 "<error> after <s>s"
// when the server cannot be reached or does not answer in time. Neither credential appears in
// a result.
func (c *postgresChecker) Check(ctx context.Context, t Target) (Result, error) {
	want, maxLag, bad := parseRoleQuery(t.Query, t.RawQuery)
	if bad != "" {
		return Result{Code: 400, Message: "postgres check: " + bad, Outcome: OutcomeError}, nil
	}
	if c.username == "" {
		return Result{Code: 500, Message: "No PostgreSQL username in config file", Outcome: OutcomeError}, nil
	}
	// The connection string names only what the environment must not decide (PGHOST and the
	// like are read by ParseConfig); the fields set after it override the rest.
	cfg, err := pgx.ParseConfig("host=127.0.0.1 sslmode=disable")
	if err != nil {
		return Result{}, fmt.Errorf("configuring postgres check of %s: %w", t.Service, err)
	}
	cfg.Host, cfg.Port = "127.0.0.1", uint16(t.Port)
	cfg.User, cfg.Password, cfg.Database = c.username, c.password, c.database
	// Plaintext on loopback, one address, no checks or settings from the environment.
	cfg.TLSConfig, cfg.Fallbacks, cfg.ValidateConnect, cfg.AfterConnect = nil, nil, nil, nil
	cfg.ConnectTimeout = 0 // ctx's deadline bounds the whole check
	// UTF8 whatever the server's encoding (a SQL_ASCII cluster is common): the simple protocol
	// below needs it, and the server's messages then reach the result as UTF-8.
	cfg.RuntimeParams = map[string]string{"application_name": "hacheck", "client_encoding": "UTF8"}
	cfg.MaxProtocolMessageBodyLen = maxPostgresMessage
	// One query on a connection used once: the simple protocol saves the prepare round trip.
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol

	start := time.Now()
	// A fresh connection per check, closed before returning: each check is a real login.
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return c.fail(ctx, err, time.Since(start)), nil
	}
	var (
		inRecovery bool
		lag        *float64
	)
	err = conn.QueryRow(ctx, roleQuery).Scan(&inRecovery, &lag)
	// Close sends Terminate; once the answer is in, a failed goodbye says nothing of health.
	_ = conn.Close(ctx)
	elapsed := time.Since(start)
	if err != nil {
		return c.fail(ctx, err, elapsed), nil
	}
	role := "primary"
	if inRecovery {
		role = "replica"
	}
	return roleResult("PostgreSQL", role, want, lag, maxLag, elapsed), nil
}

// fail is the result of a login or query that did not work: 500 with the server's error,
// or 503 when no answer came. Credentials are cut out of whatever the message quotes.
func (c *postgresChecker) fail(ctx context.Context, err error, elapsed time.Duration) Result {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		msg := fmt.Sprintf("%s: %s (SQLSTATE %s)", pgErr.Severity, pgErr.Message, pgErr.Code)
		return Result{Code: 500, Message: c.redact(msg), Outcome: OutcomeUpstreamFail}
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) {
		err = opErr
	} else if ctx.Err() != nil {
		err = ctx.Err()
	} else {
		// pgx's own errors open with the account ("failed to connect to `user=... database=...`")
		// and may span lines.
		msg := err.Error()
		if _, rest, ok := strings.Cut(msg, "`:"); ok {
			msg = rest
		}
		err = errors.New(strings.Join(strings.Fields(c.redact(msg)), " "))
	}
	return failure(ctx, err, elapsed)
}

// redact replaces the configured account in a server's message.
func (c *postgresChecker) redact(msg string) string {
	msg = strings.ReplaceAll(msg, `"`+c.username+`"`, `"<postgres_username>"`)
	msg = strings.ReplaceAll(msg, "user="+c.username, "user=<postgres_username>")
	if c.password != "" {
		msg = strings.ReplaceAll(msg, c.password, "<postgres_password>")
	}
	return oneLine(msg)
}

// parseRoleQuery reads a database check's role query: "primary" or "replica" ask for that
// role, anything else for none (want ""), and the query string's max_lag (seconds; negative
// means none) bounds a replica's lag whenever the server is one. bad says what is wrong with
// the query string.
func parseRoleQuery(query, rawQuery string) (want string, maxLag float64, bad string) {
	maxLag = -1
	// HAProxy lines written for the older hacheck put any word here (it never read the mysql
	// path's last segment); they must keep getting a plain login check.
	if query == "primary" || query == "replica" {
		want = query
	}
	values, err := url.ParseQuery(rawQuery)
	if err != nil {
		return "", 0, fmt.Sprintf("bad query string: %v", err)
	}
	if values.Has("max_lag") {
		text := values.Get("max_lag")
		lag, err := strconv.ParseFloat(text, 64)
		if err != nil || lag < 0 || math.IsInf(lag, 0) || math.IsNaN(lag) {
			return "", 0, fmt.Sprintf("bad max_lag %q: want seconds, 0 or more", truncate(text, 20))
		}
		maxLag = lag
	}
	return want, maxLag, ""
}

// roleResult judges a logged-in database's role (and lag, seconds behind or nil when unknown)
// against what the check asked for.
func roleResult(product, role, want string, lag *float64, maxLag float64, elapsed time.Duration) Result {
	if want != "" && role != want {
		return Result{Code: 500, Message: fmt.Sprintf("%s is a %s, not a %s", product, role, want), Outcome: OutcomeUpstreamFail}
	}
	msg := fmt.Sprintf("%s login OK in %s: %s", product, seconds(elapsed), role)
	if role == "replica" && maxLag >= 0 {
		switch {
		case lag == nil:
			return Result{Code: 500, Message: fmt.Sprintf("%s replica lag unknown (max_lag %gs)", product, maxLag), Outcome: OutcomeUpstreamFail}
		case *lag > maxLag:
			return Result{Code: 500, Message: fmt.Sprintf("%s replica is %.3fs behind, more than max_lag %gs", product, *lag, maxLag), Outcome: OutcomeUpstreamFail}
		}
		msg += fmt.Sprintf(", %.3fs behind", *lag)
	}
	return Result{Code: 200, Message: msg, Outcome: OutcomeOK}
}
