package lb

import (
	"cmp"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for Options fields left at zero (or negative).
const (
	DefaultWindow   = 30 * time.Second
	DefaultMaxKeys  = 2000 // as max_services
	DefaultMaxLines = 1000 // as max_source_ips
)

// linesPerKey bounds the total of everything kept, as a multiple of MaxKeys: a host typically
// has each service checked by a handful of load balancers, so this leaves room for that on
// every service while keeping the worst case to a few megabytes.
const linesPerKey = 16

// Options are the tracker's reloadable limits. The zero value means the defaults.
type Options struct {
	// Window is how long a server line or agent reply is kept and reported after it was seen.
	Window time.Duration
	// MaxKeys is how many (service, port) pairs are tracked at once (max_services).
	MaxKeys int
	// MaxLines is how many server lines and agent sources one (service, port) keeps
	// (max_source_ips). Everything kept is further bounded by 16 × MaxKeys.
	MaxLines int
}

func (o Options) withDefaults() Options {
	if o.Window <= 0 {
		o.Window = DefaultWindow
	}
	if o.MaxKeys <= 0 {
		o.MaxKeys = DefaultMaxKeys
	}
	if o.MaxLines <= 0 {
		o.MaxLines = DefaultMaxLines
	}
	return o
}

// Tracker keeps, per (service, port), the last send-state header of every load balancer server
// line and the last agent reply to every load balancer that asked within the window. Its
// memory is bounded by Options: a header or reply for which there is no room (every slot taken
// by one seen within the window) is dropped and counted (Dropped). Entries older than the
// window make room and are swept when room is needed. Safe for concurrent use.
type Tracker struct {
	opts    atomic.Pointer[Options]
	mu      sync.RWMutex
	keys    map[key]*lines // guarded by mu
	total   atomic.Int64   // entries in every lines, for the global bound
	dropped atomic.Uint64
}

type key struct {
	service string
	port    int
}

type lineKey struct {
	node, backend, server string
	source                netip.Addr
}

// lines is what one (service, port) keeps.
type lines struct {
	mu   sync.Mutex
	dead bool // swept out of Tracker.keys: a writer holding it must look again
	// Entries are pointers so that a line seen again, the usual case, is one map lookup and an
	// update in place.
	servers map[lineKey]*serverEntry
	agents  map[netip.Addr]*agentEntry
}

type serverEntry struct {
	state State
	seen  time.Time
}

type agentEntry struct {
	reply string
	seen  time.Time
}

// NewTracker returns an empty tracker.
func NewTracker(opts Options) *Tracker {
	t := &Tracker{keys: map[key]*lines{}}
	t.SetOptions(opts)
	return t
}

// SetOptions applies reloaded limits. Entries beyond a lowered limit stay until they age out.
func (t *Tracker) SetOptions(opts Options) {
	opts = opts.withDefaults()
	t.opts.Store(&opts)
}

// Window is the window in force.
func (t *Tracker) Window() time.Duration { return t.opts.Load().Window }

// Dropped is how many headers and agent replies were not kept for want of room.
func (t *Tracker) Dropped() uint64 { return t.dropped.Load() }

// Record keeps header, the X-Haproxy-Server-State value of a check request for (service, port)
// from source, seen at now. A header that does not parse (ParseState) is ignored; service must
// already be a valid name.
func (t *Tracker) Record(service string, port int, header string, source netip.Addr, now time.Time) {
	st, err := ParseState(header)
	if err != nil {
		return
	}
	k := lineKey{node: st.Node, backend: st.Backend, server: st.Server, source: source.Unmap().WithZone("")}
	t.update(key{service, port}, now, func(l *lines, room bool) bool {
		if e := l.servers[k]; e != nil {
			e.state, e.seen = st, now
			return true
		}
		if !room {
			return false
		}
		if l.servers == nil {
			l.servers = map[lineKey]*serverEntry{}
		}
		l.servers[k] = &serverEntry{st, now}
		t.total.Add(1)
		return true
	})
}

// RecordAgent keeps reply (without its "\n"), the agent-check answer given to source for
// (service, port) at now; port 0 when the request named none.
func (t *Tracker) RecordAgent(service string, port int, source netip.Addr, reply string, now time.Time) {
	source = source.Unmap().WithZone("")
	t.update(key{service, port}, now, func(l *lines, room bool) bool {
		if e := l.agents[source]; e != nil {
			e.reply, e.seen = reply, now
			return true
		}
		if !room {
			return false
		}
		if l.agents == nil {
			l.agents = map[netip.Addr]*agentEntry{}
		}
		l.agents[source] = &agentEntry{reply, now}
		t.total.Add(1)
		return true
	})
}

// update runs set on k's lines under their lock. room says whether a new entry may be added;
// set returns false when it dropped what it was given.
func (t *Tracker) update(k key, now time.Time, set func(l *lines, room bool) bool) {
	opts := t.opts.Load()
	// Three tries: a sweep that made room, or a key swept away meanwhile, needs a second look;
	// a third covers both, and beyond that another writer keeps taking the room.
	for range 3 {
		t.mu.RLock()
		l := t.keys[k]
		t.mu.RUnlock()
		if l == nil {
			if l = t.add(k, now, opts); l == nil {
				break
			}
		}
		l.mu.Lock()
		if l.dead {
			l.mu.Unlock()
			continue
		}
		maxTotal := int64(linesPerKey * opts.MaxKeys)
		room := l.len() < opts.MaxLines && t.total.Load() < maxTotal
		if !room && l.pruneLocked(now.Add(-opts.Window), t) > 0 {
			// This key's old entries made room; the global bound may still need a sweep of all.
			room = l.len() < opts.MaxLines && t.total.Load() < maxTotal
		}
		ok := set(l, room)
		keyFull := l.len() >= opts.MaxLines
		l.mu.Unlock()
		if ok {
			return
		}
		if keyFull || !t.sweep(now, opts) {
			break
		}
	}
	t.dropped.Add(1)
}

// add makes k's lines, sweeping out what is older than the window when the key limit is
// reached; nil when there is still no room.
func (t *Tracker) add(k key, now time.Time, opts *Options) *lines {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l := t.keys[k]; l != nil {
		return l
	}
	if len(t.keys) >= opts.MaxKeys {
		t.sweepLocked(now.Add(-opts.Window))
		if len(t.keys) >= opts.MaxKeys {
			return nil
		}
	}
	l := &lines{}
	t.keys[k] = l
	return l
}

// sweep drops every entry older than the window; whether it dropped anything.
func (t *Tracker) sweep(now time.Time, opts *Options) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sweepLocked(now.Add(-opts.Window)) > 0
}

func (t *Tracker) sweepLocked(oldest time.Time) int {
	dropped := 0
	for k, l := range t.keys {
		l.mu.Lock()
		dropped += l.pruneLocked(oldest, t)
		if l.len() == 0 {
			l.dead = true
			delete(t.keys, k)
			dropped++
		}
		l.mu.Unlock()
	}
	return dropped
}

func (l *lines) len() int { return len(l.servers) + len(l.agents) }

// pruneLocked drops entries seen before oldest; how many.
func (l *lines) pruneLocked(oldest time.Time, t *Tracker) int {
	n := 0
	for k, e := range l.servers {
		if e.seen.Before(oldest) {
			delete(l.servers, k)
			n++
		}
	}
	for k, e := range l.agents {
		if e.seen.Before(oldest) {
			delete(l.agents, k)
			n++
		}
	}
	t.total.Add(int64(-n))
	return n
}

// Snapshot is what was seen of service within the window before now: every port, or only
// port when port is not 0. The lists are empty, not nil, when nothing was seen.
func (t *Tracker) Snapshot(service string, port int, now time.Time) Snapshot {
	window := t.Window()
	oldest := now.Add(-window)
	snap := Snapshot{Service: service, WindowSeconds: window.Seconds(), Now: unixSeconds(now),
		Servers: []Server{}, Agents: []Agent{}}
	t.each(func(k key, l *lines) {
		if k.service != service || (port != 0 && k.port != port) {
			return
		}
		for lk, e := range l.servers {
			if e.seen.Before(oldest) {
				continue
			}
			st := e.state
			snap.Servers = append(snap.Servers, Server{
				Port: k.port, Node: lk.node, Server: lk.backend + "/" + lk.server, Source: addrText(lk.source),
				State: st.Word, Counters: st.Counters, Weight: st.Weight, TotalWeight: st.TotalWeight,
				Scur: st.Scur, BackendScur: st.BackendScur,
				LastSeen: unixSeconds(e.seen), AgeSeconds: now.Sub(e.seen).Seconds(),
			})
		}
		for source, e := range l.agents {
			if e.seen.Before(oldest) {
				continue
			}
			snap.Agents = append(snap.Agents, Agent{Port: k.port, Source: addrText(source), Reply: e.reply,
				LastSeen: unixSeconds(e.seen), AgeSeconds: now.Sub(e.seen).Seconds()})
		}
	})
	slices.SortFunc(snap.Servers, func(a, b Server) int {
		return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.Server, b.Server),
			cmp.Compare(a.Port, b.Port), cmp.Compare(a.Source, b.Source))
	})
	slices.SortFunc(snap.Agents, func(a, b Agent) int {
		return cmp.Or(cmp.Compare(a.Port, b.Port), cmp.Compare(a.Source, b.Source))
	})
	return snap
}

// StateCounts counts the server lines seen within the window before now, per service and
// state label (WordLabel), every port together.
func (t *Tracker) StateCounts(now time.Time) map[string]map[string]int {
	oldest := now.Add(-t.Window())
	counts := map[string]map[string]int{}
	t.each(func(k key, l *lines) {
		for _, e := range l.servers {
			if e.seen.Before(oldest) {
				continue
			}
			byState := counts[k.service]
			if byState == nil {
				byState = map[string]int{}
				counts[k.service] = byState
			}
			byState[WordLabel(e.state.Word)]++
		}
	})
	return counts
}

// each calls f for every key with its lines locked.
func (t *Tracker) each(f func(key, *lines)) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for k, l := range t.keys {
		l.mu.Lock()
		f(k, l)
		l.mu.Unlock()
	}
}

func addrText(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// unixSeconds avoids UnixNano, which overflows after the year 2262.
func unixSeconds(t time.Time) float64 {
	return float64(t.Unix()) + float64(t.Nanosecond())/1e9
}
