package server

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hacheck/hacheck/config"
)

// A shutdown waits for active connections: a client stalled in its request body must be cut by
// the read timeout, which still holds after the listener closed, well within the grace. The
// 100 Continue is the sign that the handler is reading the body.
func TestShutdownCutsAStalledClient(t *testing.T) {
	cfg := config.Default()
	cfg.AllowRemoteSpoolChanges = true
	srv := New(cfg, Options{Store: watchedStore(t), Version: "test", Logger: zerolog.Nop()})
	srv.timeouts = timeouts{readHeader: 1500 * time.Millisecond, read: 1500 * time.Millisecond, write: 10 * time.Second, idle: 1500 * time.Millisecond}
	addr, shutdown := serve(t, srv, 3*time.Second)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "POST /spool/web/0/status HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"+
		"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n")
	status, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || !strings.HasPrefix(status, "HTTP/1.1 100") {
		t.Fatalf("want 100 Continue, got %q, %v", status, err)
	}
	io.WriteString(conn, "status=do")
	if err := shutdown(); err != nil {
		t.Fatalf("shutdown waited for the stalled client: %v", err)
	}
}

// The server's limits on slow and idle clients hold through the listener's wrapper: a client
// that never finishes its header, one that sends nothing, and a keep-alive connection left idle
// are closed, with limits short and long.
func TestSlowAndIdleClientsAreCutOff(t *testing.T) {
	for _, limit := range []time.Duration{100 * time.Millisecond, 1500 * time.Millisecond} {
		t.Run(limit.String(), func(t *testing.T) {
			t.Parallel()
			testSlowAndIdleClientsAreCutOff(t, limit)
		})
	}
}

func testSlowAndIdleClientsAreCutOff(t *testing.T, limit time.Duration) {
	short := func(s *Server) {
		s.timeouts = timeouts{readHeader: limit, read: 2 * limit, write: 10 * limit, idle: limit}
	}
	ts := startServer(t, nil, short)
	cases := []struct {
		name, send string
		answered   bool
	}{
		{"header never finished", "GET /spool/web/0/ HTTP/1.1\r\nHost: x\r\n", false},
		{"nothing sent", "", false},
		{"idle after a keep-alive answer", "GET /spool/web/0/ HTTP/1.1\r\nHost: x\r\n\r\n", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			conn, err := net.Dial("tcp", ts.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second)) // the test's own bound
			io.WriteString(conn, c.send)
			r := bufio.NewReader(conn)
			if c.answered {
				resp, err := http.ReadResponse(r, nil)
				if err != nil || resp.StatusCode != 200 {
					t.Fatalf("keep-alive request: %v %v", resp, err)
				}
				io.Copy(io.Discard, resp.Body)
			}
			rest, err := io.ReadAll(r)
			if err != nil {
				t.Fatalf("the server did not close the connection: %v (read %q)", err, rest)
			}
			if len(rest) > 0 && !strings.HasPrefix(string(rest), "HTTP/1.1 408") {
				t.Fatalf("unexpected bytes before close: %q", rest)
			}
		})
	}
	// A client that keeps its connection busy within the limits is served throughout.
	serveOnOneConnection(t, ts.addr, 50)
}
