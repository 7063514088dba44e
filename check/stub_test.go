package check

import (
	"bufio"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// requireLocal skips the test when nothing listens on 127.0.0.1:port, and fails it on CI,
// where a missing server means a broken CI setup rather than a developer's laptop.
func requireLocal(t *testing.T, port int, what string) int {
	t.Helper()
	addr := localAddr(port)
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		msg := "this test needs " + what + " at " + addr + ": " + err.Error()
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	_ = conn.Close()
	return port
}

// stubServer serves every connection to a loopback port with handle, until the test ends, when
// the listener and every connection still open are closed and every handler has returned.
func stubServer(t *testing.T, handle func(conn net.Conn, r *bufio.Reader)) int {
	t.Helper()
	ln, port := listenPort(t)
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("accepting on stub server: %v", err)
				}
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				handle(conn, bufio.NewReader(conn))
				_ = conn.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return port
}

// writeForever writes chunk until the peer goes away: a server whose reply never ends.
func writeForever(conn net.Conn, chunk string) {
	b := []byte(chunk)
	for {
		if _, err := conn.Write(b); err != nil {
			return
		}
	}
}

// untouchedListener listens on another loopback address (127.0.0.2), for what a check must
// never connect to, and returns its address and a function that fails the test if anything
// connected by the time it is called.
func untouchedListener(t *testing.T) (addr string, assertUntouched func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatalf("listening on 127.0.0.2:0: %v", err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	tcp := ln.(*net.TCPListener)
	return ln.Addr().String(), func() {
		t.Helper()
		// A connection the check made is already in the accept queue: the kernel completes the
		// handshake before Accept. A deadline in the past makes Accept only look.
		if err := tcp.SetDeadline(time.Now()); err != nil {
			t.Fatal(err)
		}
		if conn, err := tcp.Accept(); err == nil {
			_ = conn.Close()
			t.Errorf("something connected to %s, an address only a server's reply named", ln.Addr())
		}
	}
}

// portOf is the port of a host:port address.
func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// syncBuilder collects a subprocess's output for failure messages, read while it still runs.
type syncBuilder struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *syncBuilder) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuilder) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
