package check

import (
	"context"
	"net"
	"time"
)

// tcpChecker is the "tcp" protocol: the service is up when 127.0.0.1:<port> accepts a
// connection, which is closed at once.
type tcpChecker struct {
	dialer net.Dialer
}

func newTCPChecker() *tcpChecker { return &tcpChecker{} }

// Check answers 200 "Connected in <s>s" or 503 "<error> after <s>s"; it never returns an error.
func (c *tcpChecker) Check(ctx context.Context, t Target) (Result, error) {
	start := time.Now()
	conn, err := c.dialer.DialContext(ctx, "tcp", localAddr(t.Port))
	elapsed := time.Since(start)
	if err != nil {
		return failure(ctx, err, elapsed), nil
	}
	// A close error says nothing about whether the service accepts connections.
	_ = conn.Close()
	return Result{Code: 200, Message: "Connected in " + seconds(elapsed), Outcome: OutcomeOK}, nil
}
