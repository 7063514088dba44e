package lb

import (
	"net/netip"
	"time"
)

// newcomerList is one source's newcomers, least recently seen first.
type newcomerList struct {
	key        netip.Prefix
	head, tail *entry
	bytes      int
}

// victimScan is how many of a source's least recently seen newcomers are looked at for one to
// make room: enough to find a one-off among a few real lines, few enough to stay cheap.
const victimScan = 8

// victim is who makes room among l's least recently seen newcomers: one gone for longer than
// the window, else the one that reported least often.
func (l *newcomerList) victim(sk *sketch, oldest time.Time) *entry {
	best, bestCount := l.head, -1
	for e, i := l.head, 0; e != nil && i < victimScan; e, i = e.next, i+1 {
		if e.seen.Before(oldest) {
			return e
		}
		if c := sk.count(e.hash); bestCount < 0 || c < bestCount {
			best, bestCount = e, c
		}
	}
	return best
}

func (l *newcomerList) push(e *entry) {
	e.list, e.prev, e.next = l, l.tail, nil
	if l.tail != nil {
		l.tail.next = e
	} else {
		l.head = e
	}
	l.tail = e
	l.bytes += e.cost
}

func (l *newcomerList) unlink(e *entry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		l.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		l.tail = e.prev
	}
	e.prev, e.next = nil, nil
	l.bytes -= e.cost
}
