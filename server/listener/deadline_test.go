package listener

import (
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// Deadline tests run twice: with every deadline armed on the connection at once (a reaper
// whose tick is so long that no deadline is far) and with every deadline but the past ones
// left to a fast reaper.
var reaperTicks = []struct {
	name string
	tick time.Duration
}{{"armed", time.Hour}, {"reaped", 2 * time.Millisecond}}

// lazyPair is a real loopback TCP connection: the accepted side wrapped as the server wraps
// it, and the client side.
func lazyPair(t *testing.T, tick time.Duration) (*lazyDeadlineConn, net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	accepted, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	reaper := newDeadlineReaper(tick)
	server := &lazyDeadlineConn{Conn: accepted, reaper: reaper}
	reaper.watch(server)
	t.Cleanup(reaper.close)
	// A deadline that never fires would hang the test: closing turns that into a failure.
	watchdog := time.AfterFunc(10*time.Second, func() { client.Close(); server.Close() })
	t.Cleanup(func() { watchdog.Stop(); client.Close(); server.Close() })
	return server, client
}

func forEachReaper(t *testing.T, name string, test func(t *testing.T, tick time.Duration)) {
	for _, rt := range reaperTicks {
		t.Run(strings.TrimPrefix(name+"/"+rt.name, "/"), func(t *testing.T) { test(t, rt.tick) })
	}
}

var (
	past   = time.Unix(1, 0) // what net/http uses to stop its background read
	never  = time.Time{}
	anHour = func() time.Time { return time.Now().Add(time.Hour) }
)

// Each case sets read deadlines in order, then the client sends one byte (or nothing): the
// read must return the byte unless the last deadline asked for has passed.
func TestLazyReadDeadlines(t *testing.T) {
	cases := []struct {
		name      string
		deadlines []func() time.Time
		send      bool
		timeout   bool
	}{
		{"none", nil, true, false},
		{"past, then later: the early one armed must not cut the read", []func() time.Time{
			func() time.Time { return past }, anHour}, true, false},
		{"past, then cleared", []func() time.Time{func() time.Time { return past }, func() time.Time { return never }}, true, false},
		{"later, then earlier and past", []func() time.Time{anHour, func() time.Time { return past }}, true, true},
		{"an hour, then reached", []func() time.Time{anHour, func() time.Time { return time.Now().Add(20 * time.Millisecond) }}, false, true},
		{"reached, never moved", []func() time.Time{func() time.Time { return time.Now().Add(20 * time.Millisecond) }}, false, true},
	}
	for _, c := range cases {
		forEachReaper(t, c.name, func(t *testing.T, tick time.Duration) {
			server, client := lazyPair(t, tick)
			var last time.Time
			for _, d := range c.deadlines {
				last = d()
				if err := server.SetReadDeadline(last); err != nil {
					t.Fatal(err)
				}
			}
			if c.send {
				client.Write([]byte("x"))
			}
			buf := make([]byte, 1)
			n, err := server.Read(buf)
			switch {
			case c.timeout && !errors.Is(err, os.ErrDeadlineExceeded):
				t.Fatalf("read = %d, %v; want the deadline exceeded", n, err)
			case c.timeout && time.Now().Before(last):
				t.Fatalf("read timed out before its deadline")
			case !c.timeout && (err != nil || n != 1):
				t.Fatalf("read = %d, %v; want the byte sent", n, err)
			}
		})
	}
}

// net/http stops its background read by moving the deadline into the past from another
// goroutine; the blocked read must wake at once, whatever was armed before.
func TestLazyDeadlineWakesABlockedRead(t *testing.T) {
	forEachReaper(t, "", testLazyDeadlineWakesABlockedRead)
}

func testLazyDeadlineWakesABlockedRead(t *testing.T, tick time.Duration) {
	server, client := lazyPair(t, tick)
	server.SetReadDeadline(anHour())
	done := make(chan error, 1)
	go func() {
		_, err := server.Read(make([]byte, 1))
		done <- err
	}()
	server.SetReadDeadline(past)
	if err := <-done; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("blocked read returned %v; want the deadline exceeded", err)
	}
	// And the connection stays usable once the deadline is cleared, as net/http expects.
	server.SetReadDeadline(never)
	client.Write([]byte("x"))
	if n, err := server.Read(make([]byte, 1)); n != 1 || err != nil {
		t.Fatalf("read after the deadline was cleared = %d, %v", n, err)
	}
}

// http.Server.Shutdown closes the listener (and so tells the reaper) first and then waits for
// the open connections: their deadlines must still hold, or one slow client holds up every
// shutdown for its whole grace.
// net/http's round on a keep-alive connection, three times over: a background read is woken
// with a past deadline and waited for, and the deadline is reset to none. After the reset the
// next read must wait for its data, however long, and get it; and the idle deadline set after
// the reset must still cut the read, not before its time.
func TestLazyDeadlineResetAfterAbortedRead(t *testing.T) {
	cases := []struct {
		name string
		idle time.Duration // the read deadline set after the reset; 0 for none
	}{
		{"the next read waits for its data", 0},
		{"the idle deadline set next still cuts the read", 50 * time.Millisecond},
	}
	for _, c := range cases {
		forEachReaper(t, c.name, func(t *testing.T, tick time.Duration) {
			server, client := lazyPair(t, tick)
			for round := range 3 {
				server.SetReadDeadline(anHour()) // readRequest's whole-request deadline
				server.SetReadDeadline(never)    // startBackgroundRead
				woken := make(chan error, 1)
				go func() {
					_, err := server.Read(make([]byte, 1))
					woken <- err
				}()
				server.SetReadDeadline(past) // abortPendingRead, whether or not the read has blocked yet
				if err := <-woken; !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("round %d: background read returned %v; want the deadline exceeded", round, err)
				}
				server.SetReadDeadline(never)

				var deadline time.Time
				if c.idle > 0 {
					deadline = time.Now().Add(c.idle)
					server.SetReadDeadline(deadline)
				}
				got := make(chan error, 1)
				go func() {
					n, err := server.Read(make([]byte, 1))
					if err == nil && n != 1 {
						err = errors.New("read no byte and no error")
					}
					got <- err
				}()
				if c.idle > 0 {
					err := <-got
					if !errors.Is(err, os.ErrDeadlineExceeded) || time.Now().Before(deadline) {
						t.Fatalf("round %d: idle read returned %v; want the deadline exceeded, not before it", round, err)
					}
					server.SetReadDeadline(never) // as for the next request
					continue
				}
				select {
				case err := <-got:
					t.Fatalf("round %d: read returned %v with nothing sent and no deadline", round, err)
				case <-time.After(30 * time.Millisecond): // many reaper ticks: a stale deadline would have fired
				}
				client.Write([]byte("x"))
				if err := <-got; err != nil {
					t.Fatalf("round %d: read after the data arrived returned %v", round, err)
				}
			}
		})
	}
}

func TestLazyDeadlinesOutliveTheListener(t *testing.T) {
	server, _ := lazyPair(t, 2*time.Millisecond)
	server.reaper.close()
	deadline := time.Now().Add(50 * time.Millisecond) // far: the reaper's
	server.SetReadDeadline(deadline)
	_, err := server.Read(make([]byte, 1))
	if !errors.Is(err, os.ErrDeadlineExceeded) || time.Now().Before(deadline) {
		t.Fatalf("read after the listener closed returned %v; want the deadline exceeded, not before it", err)
	}
}

func TestLazyWriteDeadlines(t *testing.T) {
	big := make([]byte, 32<<20) // more than the socket buffers hold: the write must block
	forEachReaper(t, "an early deadline moved later does not cut a write", func(t *testing.T, tick time.Duration) {
		server, client := lazyPair(t, tick)
		server.SetWriteDeadline(past)
		server.SetWriteDeadline(anHour())
		read := make(chan int64, 1)
		go func() {
			n, _ := io.Copy(io.Discard, client)
			read <- n
		}()
		n, err := server.Write(big)
		if err != nil || n != len(big) {
			t.Fatalf("write = %d, %v; want all %d bytes", n, err, len(big))
		}
		server.Close()
		if got := <-read; got != int64(len(big)) {
			t.Fatalf("client read %d bytes, want %d", got, len(big))
		}
	})
	forEachReaper(t, "a reached deadline stops a write the peer does not read", func(t *testing.T, tick time.Duration) {
		server, _ := lazyPair(t, tick)
		server.SetWriteDeadline(anHour())
		server.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
		n, err := server.Write(big)
		if !errors.Is(err, os.ErrDeadlineExceeded) || n >= len(big) {
			t.Fatalf("write = %d, %v; want a partial write and the deadline exceeded", n, err)
		}
	})
}

// Deadlines moved from several goroutines while another reads: the race detector watches,
// and the read still gets its byte once the last deadline is cleared.
func TestLazyDeadlinesUnderConcurrentMoves(t *testing.T) {
	forEachReaper(t, "", testLazyDeadlinesUnderConcurrentMoves)
}

func testLazyDeadlinesUnderConcurrentMoves(t *testing.T, tick time.Duration) {
	server, client := lazyPair(t, tick)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				switch (g + i) % 3 {
				case 0:
					server.SetReadDeadline(anHour())
				case 1:
					server.SetReadDeadline(time.Now().Add(time.Duration(i) * time.Millisecond))
				default:
					server.SetDeadline(never)
				}
			}
		}()
	}
	wg.Wait()
	server.SetReadDeadline(never)
	client.Write([]byte("x"))
	if n, err := server.Read(make([]byte, 1)); n != 1 || err != nil {
		t.Fatalf("read after concurrent moves = %d, %v", n, err)
	}
}
