package check

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// mysqlChecker is the "mysql" protocol: log in to 127.0.0.1:<port> with the configured
// account, no database selected, ping, and quit.
type mysqlChecker struct {
	username, password string
}

func newMySQLChecker(opts Options) *mysqlChecker {
	return &mysqlChecker{username: opts.MySQLUsername, password: opts.MySQLPassword}
}

// Check answers 200 when the login succeeds; 500 with the server's error when the server
// refuses it (wrong password, unknown user, too many connections); 503 "<error> after <s>s"
// when the server cannot be reached or does not answer in time; and 500 "No MySQL
// username/password in config file" when no username is configured. With query "primary" or
// "replica" it also reads @@read_only (on: replica) and answers 500 when the role is not the
// one asked for; with ?max_lag=<seconds> a replica must also be at most that far behind
// (Seconds_Behind_Master, the largest of every replication channel; unknown when replication
// is stopped or absent). Any other query is a plain login, as an empty one; a max_lag it does
// not understand is a 400. The password never appears in a result or a log.
func (c *mysqlChecker) Check(ctx context.Context, t Target) (Result, error) {
	want, maxLag, bad := parseRoleQuery(t.Query, t.RawQuery)
	if bad != "" {
		return Result{Code: 400, Message: "mysql check: " + bad, Outcome: OutcomeError}, nil
	}
	// "Unset" is an empty username only: an empty password is a valid login (e.g. a
	// passwordless monitoring account), and an empty username never is.
	if c.username == "" {
		return Result{Code: 500, Message: "No MySQL username/password in config file", Outcome: OutcomeError}, nil
	}

	cfg := mysql.NewConfig()
	cfg.User = c.username
	cfg.Passwd = c.password
	cfg.Net = "tcp"
	cfg.Addr = localAddr(t.Port)
	// Per connector rather than mysql.SetLogger: no global state, and a down server is
	// already reported in the Result, so the driver's own stderr lines would only be noise.
	cfg.Logger = &mysql.NopLogger{}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return Result{}, fmt.Errorf("configuring mysql check of %s: %w", t.Service, err)
	}

	start := time.Now()
	// A fresh pool per check, closed before returning: each check must be a real login, not
	// a ping on a connection some earlier check opened.
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(1)
	err = db.PingContext(ctx)
	askRole := want != "" || maxLag >= 0
	var (
		role string
		lag  *float64
	)
	if err == nil && askRole {
		role, lag, err = mysqlRole(ctx, db, maxLag >= 0)
	}
	// Close sends COM_QUIT on the connection left idle. Its error is dropped: once the
	// login worked, a failed quit does not make the service unhealthy.
	_ = db.Close()
	elapsed := time.Since(start)

	var serverErr *mysql.MySQLError
	switch {
	case errors.As(err, &serverErr):
		// The server names the account ("Access denied for user 'x'@..."); the message goes to
		// HAProxy and the logs, where credentials must not.
		msg := strings.ReplaceAll(serverErr.Error(), "'"+c.username+"'", "'<mysql_username>'")
		return Result{Code: 500, Message: oneLine(msg), Outcome: OutcomeUpstreamFail}, nil
	case err != nil:
		return failure(ctx, err, elapsed), nil
	case askRole:
		return roleResult("MySQL", role, want, lag, maxLag, elapsed), nil
	}
	return Result{Code: 200, Message: "MySQL login OK in " + seconds(elapsed), Outcome: OutcomeOK}, nil
}

// mysqlRole reads whether the server is read-only (a replica) and, when asked and it is one,
// how far behind it is.
func mysqlRole(ctx context.Context, db *sql.DB, wantLag bool) (role string, lag *float64, err error) {
	var readOnly int64
	if err := db.QueryRowContext(ctx, "SELECT @@global.read_only").Scan(&readOnly); err != nil {
		return "", nil, err
	}
	if readOnly == 0 {
		return "primary", nil, nil
	}
	if !wantLag {
		return "replica", nil, nil
	}
	lag, err = replicaLag(ctx, db)
	return "replica", lag, err
}

// replicaLag is the largest Seconds_Behind_Master (Seconds_Behind_Source on MySQL 8.0.22+) of
// the server's replication channels, or nil when any is unknown (replication stopped) or the
// server replicates from nothing. SHOW SLAVE STATUS is the older servers' name for it.
func replicaLag(ctx context.Context, db *sql.DB) (*float64, error) {
	rows, err := db.QueryContext(ctx, "SHOW REPLICA STATUS")
	var serverErr *mysql.MySQLError
	if errors.As(err, &serverErr) && serverErr.Number == 1064 { // syntax error: an older server
		rows, err = db.QueryContext(ctx, "SHOW SLAVE STATUS")
	}
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	lagCol := -1
	for i, name := range cols {
		if name == "Seconds_Behind_Master" || name == "Seconds_Behind_Source" {
			lagCol = i
		}
	}
	if lagCol < 0 {
		return nil, errors.New("replica status has no Seconds_Behind_Master column")
	}
	values := make([]sql.NullString, len(cols))
	dest := make([]any, len(cols))
	for i := range values {
		dest[i] = &values[i]
	}
	var worst *float64
	channels := 0
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		channels++
		if !values[lagCol].Valid {
			return nil, rows.Err()
		}
		v, err := strconv.ParseFloat(values[lagCol].String, 64)
		if err != nil {
			return nil, fmt.Errorf("replica status: Seconds_Behind_Master %q is not a number", truncate(values[lagCol].String, 20))
		}
		if worst == nil || v > *worst {
			worst = &v
		}
	}
	if err := rows.Err(); err != nil || channels == 0 {
		return nil, err
	}
	return worst, nil
}
