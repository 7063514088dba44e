package spool

import (
	"strconv"
	"time"
)

// Key names what a mark marks: a whole service (Port 0) or one instance of it (its port). Its
// String is the mark's file name and how commands, messages and the load-balancer reports name
// the target, "web" or "web:8080": one spelling everywhere.
type Key struct {
	Service string
	Port    int // 0: the whole service
}

func (k Key) String() string {
	if k.Port == 0 {
		return k.Service
	}
	return k.Service + ":" + strconv.Itoa(k.Port)
}

// FileName is the spool file name for a service (port 0) or one instance of it.
func FileName(service string, port int) string { return Key{service, port}.String() }

// Key is the mark's key.
func (m Mark) Key() Key { return Key{m.Service, m.Port} }

// Set is the marks a spool holds at one moment, by key.
type Set map[Key]Mark

// NewSet is the set of marks, keyed by their own keys; a later mark with a key already seen
// replaces the earlier one.
func NewSet(marks ...Mark) Set {
	s := make(Set, len(marks))
	for _, m := range marks {
		s[m.Key()] = m
	}
	return s
}

// With is a copy of s with marks added, each replacing the mark of its key: the spool as it
// will be once they are written.
func (s Set) With(marks ...Mark) Set {
	out := make(Set, len(s)+len(marks))
	for k, m := range s {
		out[k] = m
	}
	for _, m := range marks {
		out[m.Key()] = m
	}
	return out
}

// Status is Store.Status judged from the marks of s alone.
func (s Set) Status(service string, port int, now time.Time) (m Mark, down bool) {
	return statusOf(func(k Key) (Mark, bool) { m, ok := s[k]; return m, ok }, service, port, now)
}

// statusOf is the effective state of (service, port) given how to read the mark of a key: the
// host-wide mark, the whole-service mark, then the instance's mark; the first one that holds
// it down wins. Expired marks count as up, unreadable ones as down. A weight-only mark holds
// nothing down: when no mark does, the most specific weight-only one is returned, down false.
func statusOf(read func(Key) (Mark, bool), service string, port int, now time.Time) (m Mark, down bool) {
	var weighted Mark
	counts := func(m Mark, ok bool) bool {
		if !ok || m.Expired(now) {
			return false
		}
		if m.WeightOnly() {
			weighted = m
			return false
		}
		return true
	}
	if m, ok := read(Key{AllServices, 0}); counts(m, ok) {
		return m, true
	}
	if service != AllServices {
		if m, ok := read(Key{service, 0}); counts(m, ok) {
			return m, true
		}
	}
	if port != 0 {
		if m, ok := read(Key{service, port}); counts(m, ok) {
			return m, true
		}
	}
	return weighted, false
}
