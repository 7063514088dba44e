package server

import (
	"errors"
	"net"
	"os"
	"sync"
	"time"
)

// lazyDeadlineConn gives net/http every deadline it asks for while re-arming the runtime's
// timer far less often. On a keep-alive connection net/http moves the deadlines up to seven
// times per request (idle wait, header, whole request, write, and the abort and reset around
// its background read), and each move is a timer update under the poller's lock: about 5% of
// the CPU of a cached check in profiles. Most of those moves push a deadline later. A later
// deadline is only recorded here; the armed one stays, and if it fires first the blocked Read
// or Write finds that the deadline asked for is later, arms that one and carries on. A deadline
// earlier than the armed one is armed at once, so no Read or Write outlives the deadline asked
// for, and a Read blocked in another goroutine is woken when the deadline moves into the past
// (which is how net/http stops its background read). Between requests the underlying
// connection may hold a deadline in the past that this wrapper knows to be stale, so nothing
// may reach it but through these methods: the wrapper must not expose ReadFrom, WriteTo or
// SyscallConn.
type lazyDeadlineConn struct {
	net.Conn
	mu    sync.Mutex // serialises arming with the decision to arm
	read  deadline
	write deadline
}

// deadline is one direction's deadline: what net/http asked for and what the runtime enforces.
// Zero means none. armed is never later than want (none being the latest of all).
type deadline struct {
	want, armed time.Time
}

// ask records t and reports whether it must be armed now: when it is earlier than the armed
// deadline, or when nothing is armed.
func (d *deadline) ask(t time.Time) bool {
	d.want = t
	if d.armed.IsZero() {
		return !t.IsZero()
	}
	return !t.IsZero() && t.Before(d.armed)
}

func (c *lazyDeadlineConn) SetReadDeadline(t time.Time) error  { return c.set(&c.read, t) }
func (c *lazyDeadlineConn) SetWriteDeadline(t time.Time) error { return c.set(&c.write, t) }

func (c *lazyDeadlineConn) SetDeadline(t time.Time) error {
	return errors.Join(c.set(&c.read, t), c.set(&c.write, t))
}

func (c *lazyDeadlineConn) set(d *deadline, t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !d.ask(t) {
		return nil
	}
	return c.arm(d, t)
}

// arm makes t the deadline the runtime enforces for d's direction; c.mu must be held.
func (c *lazyDeadlineConn) arm(d *deadline, t time.Time) error {
	d.armed = t
	if d == &c.read {
		return c.Conn.SetReadDeadline(t)
	}
	return c.Conn.SetWriteDeadline(t)
}

func (c *lazyDeadlineConn) Read(p []byte) (int, error) {
	for {
		n, err := c.Conn.Read(p)
		if n > 0 || !errors.Is(err, os.ErrDeadlineExceeded) || !c.rearm(&c.read) {
			return n, err
		}
	}
}

func (c *lazyDeadlineConn) Write(p []byte) (int, error) {
	written := 0
	for {
		n, err := c.Conn.Write(p[written:])
		written += n
		if !errors.Is(err, os.ErrDeadlineExceeded) || !c.rearm(&c.write) {
			return written, err
		}
	}
}

// rearm runs after d's armed deadline fired. If that was the deadline asked for, the timeout
// is real; otherwise it arms the one asked for and says to try again.
func (c *lazyDeadlineConn) rearm(d *deadline) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d.want.Equal(d.armed) {
		return false
	}
	return c.arm(d, d.want) == nil
}

// CloseWrite keeps the TCP half-close visible through the wrapper: net/http sends a FIN this
// way before closing a connection whose request body it refused.
func (c *lazyDeadlineConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
