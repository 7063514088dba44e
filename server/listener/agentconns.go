package listener

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/hacheck/hacheck/internal/hostaddr"
)

// heldConns are the agent connections open at once, bounded in all and per client host
// (hostaddr.Prefix). When a bound is reached, the connection that has waited longest on its
// client (for its request, or for its close after the reply) is closed to make room: a real
// agent never waits, so only idle and slow clients are ever closed, and whatever they hold, a
// new connection is answered.
type heldConns struct {
	mu       sync.Mutex
	max, per int
	conns    map[*heldConn]struct{}
	bySource map[netip.Prefix]int
	now      func() time.Time
}

type heldConn struct {
	owner   *heldConns
	c       net.Conn
	source  netip.Prefix
	since   time.Time // when it began waiting on its client
	waiting bool
	closed  bool // closed to make room
}

func newHeldConns(max, per int) *heldConns {
	if max <= 0 {
		max = DefaultAgentMaxConns
	}
	if per <= 0 {
		per = DefaultAgentMaxPerSource
	}
	return &heldConns{max: max, per: min(per, max), conns: map[*heldConn]struct{}{},
		bySource: map[netip.Prefix]int{}, now: time.Now}
}

// add holds c, waiting for its request, making room if a bound is reached. When no connection
// is waiting that could make room (every one is being answered, which takes moments), c is
// closed and nil returned.
func (hs *heldConns) add(c net.Conn) *heldConn {
	h := &heldConn{owner: hs, c: c, source: hostaddr.Prefix(remoteAddr(c)), waiting: true}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	h.since = hs.now()
	if hs.bySource[h.source] >= hs.per && !hs.evictLocked(h.source, true) ||
		len(hs.conns) >= hs.max && !hs.evictLocked(netip.Prefix{}, false) {
		c.Close()
		return nil
	}
	hs.conns[h] = struct{}{}
	hs.bySource[h.source]++
	return h
}

// evictLocked closes the connection that has waited longest, of source when bySource; whether
// there was one.
func (hs *heldConns) evictLocked(source netip.Prefix, bySource bool) bool {
	var oldest *heldConn
	for h := range hs.conns {
		if !h.waiting || bySource && h.source != source {
			continue
		}
		if oldest == nil || h.since.Before(oldest.since) {
			oldest = h
		}
	}
	if oldest == nil {
		return false
	}
	oldest.closed = true
	oldest.c.Close()
	hs.removeLocked(oldest)
	return true
}

func (hs *heldConns) removeLocked(h *heldConn) {
	if _, ok := hs.conns[h]; !ok {
		return
	}
	delete(hs.conns, h)
	if hs.bySource[h.source]--; hs.bySource[h.source] <= 0 {
		delete(hs.bySource, h.source)
	}
}

// remove lets h go once it is done.
func (hs *heldConns) remove(h *heldConn) {
	if h == nil {
		return
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.removeLocked(h)
}

// busy marks h as being answered, no longer to be closed for room; false when it was closed
// for room meanwhile. A nil h (a connection served outside Serve) is always busy.
func (h *heldConn) busy() bool {
	if h == nil {
		return true
	}
	h.owner.mu.Lock()
	defer h.owner.mu.Unlock()
	h.waiting = false
	return !h.closed
}

// wait marks h as waiting on its client again, from now.
func (h *heldConn) wait() {
	if h == nil {
		return
	}
	h.owner.mu.Lock()
	defer h.owner.mu.Unlock()
	h.waiting, h.since = true, h.owner.now()
}
