package listener

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// lazyDeadlineConn gives net/http every deadline it asks for without a runtime timer update per
// request. On a keep-alive connection net/http moves the deadlines up to seven times a request
// (idle wait, header, whole request, write, and the abort and reset around its background
// read); each move that reaches the runtime arms, re-arms or stops a timer under the poller's
// lock and reads the clock twice. With the timeouts set, the load harness lost ~10% of its
// cached keep-alive throughput to that even when later deadlines were only armed as earlier
// ones fired.
//
// Deadlines near enough to matter at a fine grain (within the reaper's horizon: tests' short
// timeouts, and the past deadline net/http uses to wake its background read) are armed on the
// connection at once, as before. Farther ones (net/http's header, idle, read and write
// timeouts, 5 s and more) are only recorded; the listener's deadlineReaper looks at every
// connection once a tick and arms a past deadline on any whose recorded deadline has been
// reached, which wakes a blocked Read or Write with os.ErrDeadlineExceeded. So a far deadline
// fires up to one tick late, and never early.
//
// Whatever is armed on the underlying connection is never later than the deadline asked for;
// when it fires, Read and Write ask rearm whether the deadline asked for has really been
// reached, and carry on if not. The reaper looks at every recorded deadline, near ones too, so
// a deadline whose arming a race lost still fires, up to a tick late. Between requests the
// underlying connection may (rarely, when a reset races with arming) hold a deadline in the
// past that this wrapper knows to be stale, so nothing may reach it but through these methods:
// the wrapper must not expose ReadFrom, WriteTo or SyscallConn.
type lazyDeadlineConn struct {
	net.Conn
	reaper *deadlineReaper
	mu     sync.Mutex // serialises arming with the decision to arm
	read   deadline
	write  deadline
}

// deadline is one direction's deadline. Zero means none.
type deadline struct {
	// wantAt is the deadline asked for, on the reaper's clock; 0 when there is none.
	wantAt atomic.Int64
	// armed is what the runtime enforces, guarded by mu: zero, or no later than wantAt. It is
	// zero while wantAt is set only when the reaper has that deadline (far when stored, or
	// reached and armed by expire at its next tick).
	armed time.Time
	// armedAny mirrors !armed.IsZero(), written by arm under mu and read without it in set:
	// a stale false leaves an early deadline for rearm, a stale true costs the lock.
	armedAny atomic.Bool
}

func (c *lazyDeadlineConn) SetReadDeadline(t time.Time) error  { return c.set(&c.read, t) }
func (c *lazyDeadlineConn) SetWriteDeadline(t time.Time) error { return c.set(&c.write, t) }

func (c *lazyDeadlineConn) SetDeadline(t time.Time) error {
	return errors.Join(c.set(&c.read, t), c.set(&c.write, t))
}

func (c *lazyDeadlineConn) set(d *deadline, t time.Time) error {
	at := c.reaper.clockOf(t)
	if t.IsZero() || c.reaper.far(at) {
		// Recorded without the lock: whatever is armed is earlier (a near deadline armed
		// before was near when the reaper's clock was no later than now), and if it fires,
		// rearm finds this one.
		d.wantAt.Store(at)
		if d.armedAny.Load() {
			// But if something is armed and the deadline now asked for (whoever stored it last)
			// is none or far, it is cleared. Usually that is the past deadline net/http sets to
			// wake its background read and then resets, every request: left armed, it fails
			// the next request's first Read (a wrapped error, errors.Is, the lock in rearm),
			// which costs more than clearing it here. Deciding from the current wanted value,
			// as rearm does, never clears a deadline that has become near or been reached
			// (the reaper's clock only moves forward), so expire's past deadline stays.
			c.mu.Lock()
			defer c.mu.Unlock()
			if want := d.wantAt.Load(); !d.armed.IsZero() && (want == 0 || c.reaper.far(want)) {
				return c.arm(d, time.Time{})
			}
		}
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	d.wantAt.Store(at)
	// An earlier deadline armed before stays: if it fires, rearm finds this one.
	if !d.armed.IsZero() && !t.Before(d.armed) {
		return nil
	}
	return c.arm(d, t)
}

// arm makes t the deadline the runtime enforces for d's direction; c.mu must be held.
func (c *lazyDeadlineConn) arm(d *deadline, t time.Time) error {
	d.armed = t
	d.armedAny.Store(!t.IsZero())
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

// rearm runs after what was armed for d fired. If the deadline asked for has been reached, the
// timeout is real; otherwise it arms what the deadline asked for needs and says to try again.
func (c *lazyDeadlineConn) rearm(d *deadline) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	at := d.wantAt.Load()
	switch {
	case at == 0 || c.reaper.far(at):
		// Clearing costs no timer; a far deadline is the reaper's.
		return c.arm(d, time.Time{}) == nil
	case at <= c.reaper.now.Load():
		return false
	}
	want := c.reaper.timeOf(at)
	if !want.After(time.Now()) {
		return false
	}
	return c.arm(d, want) == nil
}

// expire is the reaper's: d's deadline has been reached, so make a blocked Read or Write (and
// the next one) fail.
func (c *lazyDeadlineConn) expire(d *deadline, now int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if at := d.wantAt.Load(); at != 0 && at <= now && !d.armed.Equal(aLongTimeAgo) {
		c.arm(d, aLongTimeAgo)
	}
}

// aLongTimeAgo is the past deadline the reaper arms, as net/http does to wake a read.
var aLongTimeAgo = time.Unix(1, 0)

// Close also stops the reaper looking at the connection.
func (c *lazyDeadlineConn) Close() error {
	c.reaper.forget(c)
	return c.Conn.Close()
}

// CloseWrite keeps the TCP half-close visible through the wrapper: net/http sends a FIN this
// way before closing a connection whose request body it refused.
func (c *lazyDeadlineConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// deadlineReaper enforces the far deadlines of a listener's connections: every tick it arms a
// past deadline on each connection whose recorded deadline has been reached.
type deadlineReaper struct {
	tick  time.Duration
	epoch time.Time    // the reaper's clock is monotonic nanoseconds since epoch
	now   atomic.Int64 // the reaper's clock at its last tick: never ahead of the real one

	mu      sync.Mutex
	conns   map[*lazyDeadlineConn]struct{}
	closing bool // the listener is closed: stop once the last connection is
	running bool // run is ticking
}

// defaultReaperTick is how late a far deadline may fire: net/http's shortest is 5 s.
const defaultReaperTick = 500 * time.Millisecond

func newDeadlineReaper(tick time.Duration) *deadlineReaper {
	r := &deadlineReaper{tick: tick, epoch: time.Now(), conns: make(map[*lazyDeadlineConn]struct{}), running: true}
	go r.run()
	return r
}

// clockOf is t on the reaper's clock (t's monotonic reading, when it has one), never 0.
func (r *deadlineReaper) clockOf(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return max(int64(t.Sub(r.epoch)), 1)
}

// timeOf is the time of a reading of the reaper's clock (with a monotonic reading).
func (r *deadlineReaper) timeOf(at int64) time.Time { return r.epoch.Add(time.Duration(at)) }

// far says at is more than two ticks past the reaper's clock, so the reaper can enforce it:
// nearer deadlines need the runtime's precision. The reaper's clock is never ahead of the real
// one, so a stale reading only makes more deadlines far, which only makes them up to a tick
// late.
func (r *deadlineReaper) far(at int64) bool {
	return at > r.now.Load()+int64(2*r.tick)
}

func (r *deadlineReaper) watch(c *lazyDeadlineConn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.conns[c] = struct{}{}
	if !r.running {
		// Accepted just before the listener closed, after the reaper saw no connection left.
		r.running = true
		go r.run()
	}
}

func (r *deadlineReaper) forget(c *lazyDeadlineConn) {
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
}

// close is the listener's: the reaper goes on enforcing the deadlines of the connections
// still open (http.Server.Shutdown closes listeners first, then waits for connections, which
// their read and write timeouts must still bound), and stops at the first tick with none left.
func (r *deadlineReaper) close() {
	r.mu.Lock()
	r.closing = true
	r.mu.Unlock()
}

func (r *deadlineReaper) run() {
	ticker := time.NewTicker(r.tick)
	defer ticker.Stop()
	var due []*lazyDeadlineConn
	for {
		now := int64(time.Since(r.epoch))
		r.now.Store(now)
		due = due[:0]
		r.mu.Lock()
		if r.closing && len(r.conns) == 0 {
			r.running = false
			r.mu.Unlock()
			return
		}
		for c := range r.conns {
			if reached(&c.read, now) || reached(&c.write, now) {
				due = append(due, c)
			}
		}
		r.mu.Unlock()
		for _, c := range due {
			c.expire(&c.read, now)
			c.expire(&c.write, now)
		}
		<-ticker.C
	}
}

func reached(d *deadline, now int64) bool {
	at := d.wantAt.Load()
	return at != 0 && at <= now
}
