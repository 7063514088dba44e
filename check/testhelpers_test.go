package check

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// mariaDBAddr is where the tests expect a MariaDB whose root account has an empty password.
const mariaDBAddr = "127.0.0.1:3306"

// requireMariaDB skips the test when no MariaDB listens on mariaDBAddr, and fails it on CI,
// where a missing database means a broken CI setup rather than a developer's laptop.
func requireMariaDB(t *testing.T) int {
	t.Helper()
	conn, err := net.DialTimeout("tcp", mariaDBAddr, 2*time.Second)
	if err != nil {
		msg := "this test needs MariaDB at " + mariaDBAddr + " (user root, empty password): " + err.Error()
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	_ = conn.Close()
	return 3306
}

// checkCtx is the context a check runs under in a test: bounded, so that a broken checker
// fails the test instead of hanging it.
func checkCtx(t *testing.T, timeout time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	t.Cleanup(cancel)
	return ctx
}

// closedPort returns a loopback port nothing listens on: it was just bound and released.
func closedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening on 127.0.0.1:0: %v", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		t.Fatalf("closing listener: %v", err)
	}
	return port
}

// listenPort starts a loopback listener that is closed when the test ends and returns it with
// its port.
func listenPort(t *testing.T) (net.Listener, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listening on 127.0.0.1:0: %v", err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln, ln.Addr().(*net.TCPAddr).Port
}

// silentPort returns the port of a server that accepts connections and never writes or
// closes them until the test ends: a hung service.
func silentPort(t *testing.T) int {
	t.Helper()
	ln, port := listenPort(t)
	var (
		mu    sync.Mutex
		conns []net.Conn
		done  = make(chan struct{})
	)
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("accepting on silent server: %v", err)
				}
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return port
}
