package check

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// synDroppingPort returns the port of a loopback listener whose accept queue is full and never
// drained: the kernel drops every new connection attempt, as it does for an overloaded service,
// so a dial to it neither succeeds nor fails until the kernel gives up minutes later.
func synDroppingPort(t *testing.T) int {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socket: %v", err)
	}
	t.Cleanup(func() { _ = syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("bind: %v", err)
	}
	// Backlog 0: the queue holds one or two established connections, and nobody accepts them.
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatalf("listen: %v", err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatalf("getsockname: %v", err)
	}
	port := sa.(*syscall.SockaddrInet4).Port
	addr := localAddr(port)
	for filled := 0; ; filled++ {
		if filled > 16 {
			t.Fatalf("the accept queue of %s never filled", addr)
		}
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			var netErr net.Error
			if !errors.As(err, &netErr) || !netErr.Timeout() {
				t.Fatalf("filling the accept queue of %s: %v", addr, err)
			}
			return port // this attempt's SYN was dropped: the queue is full
		}
		t.Cleanup(func() { _ = conn.Close() })
	}
}

// muteTLSPort returns the port of a server that accepts connections and reads whatever comes
// (a TLS ClientHello) without ever answering; it closes its side once the client closes, so it
// holds nothing after the client lets go.
func muteTLSPort(t *testing.T) int {
	t.Helper()
	ln, port := listenPort(t)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[conn] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _ = io.Copy(io.Discard, conn)
				_ = conn.Close()
				mu.Lock()
				delete(conns, conn)
				mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for conn := range conns {
			_ = conn.Close() // a client still holding on: the test has already failed
		}
		mu.Unlock()
		wg.Wait()
	})
	return port
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("counting open descriptors: %v", err)
	}
	return len(entries)
}

// Nothing a check starts outlives its deadline: after 500 checks of a port that drops
// connection attempts, or of a TLS port that never answers the handshake, the process holds no
// more goroutines or descriptors than before, within check_timeout and a second.
func TestChecksLeaveNothingBehind(t *testing.T) {
	const checkTimeout = 300 * time.Millisecond
	tests := []struct {
		name     string
		protocol string
		port     func(*testing.T) int
		checks   int
	}{
		{"http to a port dropping SYNs", "http", synDroppingPort, 500},
		{"https to a port dropping SYNs", "https", synDroppingPort, 500},
		{"https to a port that never answers the handshake", "https", muteTLSPort, 200},
		{"haproxy stats on a port dropping SYNs", "haproxy", synDroppingPort, 200},
		{"redis on a port dropping SYNs", "redis-info", synDroppingPort, 200},
		{"smtp on a port dropping SYNs", "smtp", synDroppingPort, 200},
		{"grpc on a port dropping SYNs", "grpc", synDroppingPort, 200},
		{"grpc on a port that never speaks HTTP/2", "grpc", muteTLSPort, 200},
		{"postgres on a port dropping SYNs", "postgres", synDroppingPort, 200},
		{"postgres on a port that never answers the startup", "postgres", muteTLSPort, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port := strconv.Itoa(tt.port(t))
			p, _ := newTestPipeline(t, time.Hour)
			s := *p.settings.Load()
			s.CheckTimeout = checkTimeout
			p.Configure(s)
			goroutines, fds := runtime.NumGoroutine(), openFDs(t)

			var wg sync.WaitGroup
			answers := make(chan Answer, tt.checks)
			for i := range tt.checks {
				wg.Add(1)
				go func() {
					defer wg.Done()
					// Distinct services: every request is its own upstream check.
					answers <- p.Answer(Request{Protocol: tt.protocol, Service: "svc" + strconv.Itoa(i), Port: port, Header: http.Header{}})
				}()
			}
			wg.Wait()
			close(answers)
			answered := time.Now()
			for a := range answers {
				if a.Code != 503 || a.Outcome != OutcomeTimeout {
					t.Fatalf("check answered %d %s %q; want 503 timeout", a.Code, a.Outcome, a.Body)
				}
			}

			// The kernel closes sockets asynchronously to us: poll, with a deadline.
			deadline := answered.Add(checkTimeout + time.Second)
			for {
				g, f := runtime.NumGoroutine(), openFDs(t)
				if g <= goroutines && f <= fds {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s after the checks answered: %d goroutines (%d before), %d descriptors (%d before)",
						checkTimeout+time.Second, g, goroutines, f, fds)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}
