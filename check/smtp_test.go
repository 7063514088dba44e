package check

import (
	"bufio"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestSMTPStubs(t *testing.T) {
	// session greets with greeting, then answers the client's first line with quitReply.
	session := func(greeting, quitReply string) int {
		return stubServer(t, func(conn net.Conn, r *bufio.Reader) {
			if _, err := conn.Write([]byte(greeting)); err != nil {
				return
			}
			line, err := r.ReadString('\n')
			if err != nil || line != "QUIT\r\n" {
				return
			}
			_, _ = conn.Write([]byte(quitReply))
		})
	}
	endless := func(chunk string) int {
		return stubServer(t, func(conn net.Conn, r *bufio.Reader) { writeForever(conn, chunk) })
	}
	runProtocolCases(t, NewRegistry(Options{}), []protocolCase{
		{name: "good", protocol: "smtp", port: session("220 mx.example ESMTP\r\n", "221 2.0.0 Bye\r\n"), wantCode: 200, outcome: OutcomeOK, msg: regexp.MustCompile(`^SMTP QUIT answered 221 in \d+\.\d{3}s$`)},
		{name: "multi-line greeting", protocol: "smtp", port: session("220-mx.example ESMTP\r\n220-no UCE\r\n220 ready\r\n", "221 Bye\r\n"), wantCode: 200, outcome: OutcomeOK, msg: regexp.MustCompile(`^SMTP QUIT answered 221 in`)},
		{name: "refusing greeting", protocol: "smtp", port: session("554 5.3.2 no service here\r\n", "221 Bye\r\n"), wantCode: 503, outcome: OutcomeUpstreamFail, msg: regexp.MustCompile(`^SMTP greeting: "554 5\.3\.2 no service here"$`)},
		{name: "multi-line refusal", protocol: "smtp", port: session("421-closing\r\n421 try later\r\n", "221 Bye\r\n"), wantCode: 503, outcome: OutcomeUpstreamFail, msg: regexp.MustCompile(`^SMTP greeting: "421 closing try later"$`)},
		{name: "not SMTP", protocol: "smtp", port: session("hello there\r\n", ""), wantCode: 503, outcome: OutcomeUpstreamFail, msg: regexp.MustCompile(`^SMTP greeting: short response: "?hello there"?$`)},
		{name: "QUIT not 221", protocol: "smtp", port: session("220 mx\r\n", "500 5.5.1 what?\r\n"), wantCode: 503, outcome: OutcomeUpstreamFail, msg: regexp.MustCompile(`^SMTP QUIT reply: "500 5\.5\.1 what\?"$`)},
		{name: "hangs up before QUIT reply", protocol: "smtp", port: session("220 mx\r\n", ""), wantCode: 503, outcome: OutcomeUpstreamFail, msg: regexp.MustCompile(`^reading SMTP QUIT reply: unexpected EOF after \d+\.\d{3}s$`)},
		{name: "endless greeting lines", protocol: "smtp", port: endless("220-" + strings.Repeat("spam ", 50) + "\r\n"), wantCode: 503, outcome: OutcomeUpstreamFail, msg: regexp.MustCompile(`^reading SMTP greeting: reply longer than 16384 bytes after \d+\.\d{3}s$`)},
		{name: "endless greeting line", protocol: "smtp", port: endless("220 " + strings.Repeat("x", 4096)), wantCode: 503, outcome: OutcomeUpstreamFail, msg: regexp.MustCompile(`^reading SMTP greeting: reply longer than 16384 bytes after`)},
		{name: "silent", protocol: "smtp", port: silentPort(t), timeout: 200 * time.Millisecond, wantCode: 503, outcome: OutcomeTimeout, msg: regexp.MustCompile(`^reading SMTP greeting: .*timeout after \d+\.\d{3}s$`)},
		{name: "refused", protocol: "smtp", port: closedPort(t), wantCode: 503, outcome: OutcomeRefused, msg: regexp.MustCompile(`connection refused after \d+\.\d{3}s$`)},
	})
}
