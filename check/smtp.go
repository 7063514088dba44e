package check

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strings"
	"time"
)

// maxSMTPReply bounds the greeting and the QUIT reply together. A greeting is a line or a few;
// a server sending more is not greeting.
const maxSMTPReply = 16 << 10

// smtpChecker is the "smtp" protocol: read 127.0.0.1:<port>'s greeting, send QUIT, and expect
// 221 (closing).
type smtpChecker struct {
	dialer net.Dialer
}

// Check answers 200 "SMTP QUIT answered 221 in <s>s" when the server greets with 220 and
// answers QUIT with 221; 503 with what it said otherwise, and 503 "<error> after <s>s" when it
// cannot be reached, stays silent, hangs up or sends more than the cap. A greeting other than
// 220 (421: closing, 554: no service) is a failure: the server is there but turns mail away.
// Check never returns an error.
func (c *smtpChecker) Check(ctx context.Context, t Target) (Result, error) {
	start := time.Now()
	conn, err := dialLocal(ctx, &c.dialer, t.Port)
	if err != nil {
		return failure(ctx, err, time.Since(start)), nil
	}
	defer conn.Close()
	r := textproto.NewReader(bufio.NewReader(newCappedReader(conn, maxSMTPReply)))

	if _, _, err := r.ReadResponse(220); err != nil {
		return smtpFailure(ctx, "greeting", err, start), nil
	}
	if _, err := io.WriteString(conn, "QUIT\r\n"); err != nil {
		return failure(ctx, fmt.Errorf("sending QUIT: %w", err), time.Since(start)), nil
	}
	if _, _, err := r.ReadResponse(221); err != nil {
		return smtpFailure(ctx, "QUIT reply", err, start), nil
	}
	return Result{Code: 200, Message: "SMTP QUIT answered 221 in " + seconds(time.Since(start)), Outcome: OutcomeOK}, nil
}

// smtpFailure is the 503 for a reply that did not come or was not the one expected.
func smtpFailure(ctx context.Context, what string, err error, start time.Time) Result {
	var reply *textproto.Error
	var protoErr textproto.ProtocolError
	switch {
	case errors.As(err, &reply):
		// A multi-line reply's lines are joined by newlines; the message is one line.
		msg := fmt.Sprintf("%03d %s", reply.Code, strings.ReplaceAll(reply.Msg, "\n", " "))
		return Result{Code: 503, Message: "SMTP " + what + ": " + quoteReply(msg), Outcome: OutcomeUpstreamFail}
	case errors.As(err, &protoErr):
		return Result{Code: 503, Message: "SMTP " + what + ": " + oneLine(string(protoErr)), Outcome: OutcomeUpstreamFail}
	case errors.Is(err, io.EOF):
		err = io.ErrUnexpectedEOF // the server hung up before it replied
	}
	return failure(ctx, fmt.Errorf("reading SMTP %s: %w", what, err), time.Since(start))
}
