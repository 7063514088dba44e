package check

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
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
// username/password in config file" when no username is configured. The password never
// appears in a result or a log.
func (c *mysqlChecker) Check(ctx context.Context, t Target) (Result, error) {
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
	err = db.PingContext(ctx)
	// Close sends COM_QUIT on the connection Ping left idle. Its error is dropped: once the
	// login worked, a failed quit does not make the service unhealthy.
	_ = db.Close()
	elapsed := time.Since(start)

	var serverErr *mysql.MySQLError
	switch {
	case errors.As(err, &serverErr):
		// The server names the account ("Access denied for user 'x'@..."); the message goes to
		// HAProxy and the logs, where credentials must not.
		msg := strings.ReplaceAll(serverErr.Error(), "'"+c.username+"'", "'<mysql_username>'")
		return Result{Code: 500, Message: msg, Outcome: OutcomeUpstreamFail}, nil
	case err != nil:
		return failure(ctx, err, elapsed), nil
	}
	return Result{Code: 200, Message: "MySQL login OK in " + seconds(elapsed), Outcome: OutcomeOK}, nil
}
