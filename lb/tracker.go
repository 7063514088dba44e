package lb

import (
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hacheck/hacheck/internal/hostaddr"
)

// Defaults for Options fields left at zero (or negative).
const (
	DefaultWindow = 30 * time.Second
	// DefaultMaxBytes is the tracker's memory budget: some 10,000 reporters with short names,
	// 7,500 of them counted, more than the load balancers of most hosts send.
	DefaultMaxBytes = 8 << 20
)

// Whose word counts. What --wait, the guard, GET /lb and the metrics read is what load
// balancers report, so it must come from load balancers. Anyone allowed to ask for a check can
// send a send-state header, and anyone who reaches the agent port can poll it; what tells a load
// balancer apart is that it keeps checking. A reporter (one server line of one load balancer,
// or one address polling the agent for one service and port) is established once it has
// reported minReports times over at least minSpan, each report within the window of the one
// before: HAProxy checks every few seconds at most, so a real load balancer is established a
// few check intervals after its first check, while a one-off `nc` to the agent port or a `curl`
// with a copied header never is, and neither stalls a --wait nor ends one. Until then it is
// kept (to be counted when it comes back) but shown only as a number, Snapshot.Unconfirmed.
// A client that keeps reporting like a load balancer is one, as far as anything here can
// tell: Options.Sources (lb_sources) is what limits who that can be.
const (
	minReports = 3
	minSpan    = time.Second
)

// The budget's shares. Reporters not yet established (newcomers) may hold a quarter of the
// budget, those of one source (a host: hostaddr.Prefix) a quarter of that; a source at
// its share makes room by dropping its own least recently seen newcomer, which is never a
// load balancer that is checking: that one reports every few seconds. Established reporters
// hold the rest and are never pushed out: they leave only by falling out of the window. So
// a flood of invented reporters costs newcomers their room, never a load balancer its place.
const (
	newcomerShareDiv  = 4
	perSourceShareDiv = 4
	// entryOverhead is what an entry costs beyond its strings: the struct, its map slot with
	// the map's room to grow, the list links (measured: about 730 bytes).
	entryOverhead = 768
	// maxSnapshotEntries bounds each list of a Snapshot, so that GET /lb stays well under
	// what a client reads (about 1 MB at most with the longest names).
	maxSnapshotEntries = 1000
)

// Options are the tracker's reloadable settings. The zero value means the defaults.
type Options struct {
	// Window is how long a server line or agent reply is kept and reported after it was seen.
	Window time.Duration
	// MaxBytes is the memory budget of everything kept.
	MaxBytes int
	// Sources may report (lb_sources); nil or empty: any address.
	Sources []netip.Prefix
	// MinReports and MinSpan make a reporter established: that many reports over at least
	// that long (see "Whose word counts"); 0 means 3 and 1 s, a negative MinSpan none. Tests
	// lower them.
	MinReports int
	MinSpan    time.Duration
}

func (o Options) withDefaults() Options {
	if o.Window <= 0 {
		o.Window = DefaultWindow
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.MinReports <= 0 {
		o.MinReports = minReports
	}
	if o.MinSpan == 0 {
		o.MinSpan = minSpan
	}
	return o
}

func (o *Options) allows(a netip.Addr) bool {
	if len(o.Sources) == 0 {
		return true
	}
	for _, p := range o.Sources {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Tracker keeps, per (service, port), the last send-state header of every load balancer server
// line and the last agent reply to every address that polled within the window, with how long
// each has been reporting (see "Whose word counts" above). Its memory is bounded by
// Options.MaxBytes; what finds no room is dropped and counted (Dropped). Safe for concurrent use.
type Tracker struct {
	opts    atomic.Pointer[Options]
	dropped atomic.Uint64

	mu        sync.Mutex
	sketch    *sketch // how often each newcomer reported, across evictions
	entries   map[lineID]*entry
	newcomers map[netip.Prefix]*newcomerList // by source, least recently seen first
	estBytes  int                            // cost of the established entries
	newBytes  int                            // cost of the newcomers
	lastSweep time.Time
}

// lineID is one reporter of one service and port: a server line (node, backend, server, and
// the address its checks come from), or an agent poller (agent, and its address). Every
// reporter of every service is in one map: a map per service would cost a map's first slots
// (near a kilobyte) for each of the many services that have one reporter.
type lineID struct {
	service               string
	port                  int
	node, backend, server string
	source                netip.Addr
	agent                 bool
}

// entry is one reporter.
type entry struct {
	line  lineID
	state State  // a server line's last header (its Address dropped)
	reply string // an agent's last reply
	code  int    // what hacheck answered a server line's last check; 0: not known
	// first is the first report of the current run of reports (none more than the window
	// after the one before), seen the last, since the first of the current state or reply.
	first, seen, since time.Time
	reports            int
	cost               int
	hash               uint64 // its identity in Tracker.sketch
	established        bool
	list               *newcomerList // a newcomer's source list
	prev, next         *entry
}

// NewTracker returns an empty tracker.
func NewTracker(opts Options) *Tracker {
	t := &Tracker{entries: map[lineID]*entry{}, newcomers: map[netip.Prefix]*newcomerList{}, sketch: newSketch()}
	t.SetOptions(opts)
	return t
}

// SetOptions applies reloaded settings. Entries beyond a lowered budget, or from sources no
// longer allowed, stay until they age out; they are shown meanwhile.
func (t *Tracker) SetOptions(opts Options) {
	opts = opts.withDefaults()
	opts.Sources = slices.Clone(opts.Sources)
	t.opts.Store(&opts)
}

// Window is the window in force.
func (t *Tracker) Window() time.Duration { return t.opts.Load().Window }

// Dropped is how many headers and agent replies were not kept, or pushed out, for want of room.
func (t *Tracker) Dropped() uint64 { return t.dropped.Load() }

// Record keeps header, the X-Haproxy-Server-State value of a check request for (service, port)
// from source, seen at now, and code, what hacheck answered that check (0: not known). A header
// that does not parse (ParseState), or from a source not in Options.Sources, is ignored; service
// must already be a valid name.
func (t *Tracker) Record(service string, port int, header string, code int, source netip.Addr, now time.Time) {
	opts := t.opts.Load()
	source = source.Unmap().WithZone("")
	if !opts.allows(source) {
		return
	}
	st, err := ParseState(header)
	if err != nil {
		return
	}
	id := lineID{service: service, port: port, node: st.Node, backend: st.Backend, server: st.Server, source: source}
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.entries[id]; e != nil && !t.expired(e, now, opts) {
		e.code = code
		t.report(e, e.setState(st), now, opts)
		return
	}
	// A new line: keep copies of its strings, not the request's memory they are part of.
	id.service, id.node, id.backend, id.server = strings.Clone(service), strings.Clone(id.node), strings.Clone(id.backend), strings.Clone(id.server)
	e := &entry{line: id, code: code, cost: entryOverhead + len(service) + len(id.node) + len(id.backend) + len(id.server)}
	e.setState(st)
	t.insert(e, now, opts)
}

// setState keeps st as the line's last state, sharing the strings it already holds; whether
// the state word changed.
func (e *entry) setState(st State) bool {
	st.Node, st.Backend, st.Server, st.Address = e.line.node, e.line.backend, e.line.server, ""
	changed := st.Word != e.state.Word
	switch {
	case !changed:
		st.Word = e.state.Word
	case WordLabel(st.Word) != WordOther:
		st.Word = WordLabel(st.Word)
	default:
		st.Word = strings.Clone(st.Word)
	}
	if st.Counters == e.state.Counters {
		st.Counters = e.state.Counters
	} else {
		st.Counters = strings.Clone(st.Counters)
	}
	e.state = st
	return changed
}

// RecordAgent keeps reply (without its "\n"), the agent-check answer given to source for
// (service, port) at now; port 0 when the request named none. A source not in Options.Sources
// is ignored.
func (t *Tracker) RecordAgent(service string, port int, source netip.Addr, reply string, now time.Time) {
	opts := t.opts.Load()
	source = source.Unmap().WithZone("")
	if !opts.allows(source) {
		return
	}
	id := lineID{service: service, port: port, source: source, agent: true}
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.entries[id]; e != nil && !t.expired(e, now, opts) {
		changed := reply != e.reply
		if changed {
			e.reply = strings.Clone(reply)
		}
		t.report(e, changed, now, opts)
		return
	}
	id.service = strings.Clone(service)
	e := &entry{line: id, reply: strings.Clone(reply), cost: entryOverhead + len(service) + len(reply)}
	t.insert(e, now, opts)
}

// expired removes e when its last report is older than the window: a reporter that comes back
// after that starts over as a newcomer.
func (t *Tracker) expired(e *entry, now time.Time, opts *Options) bool {
	if now.Sub(e.seen) <= opts.Window {
		return false
	}
	t.remove(e)
	return true
}

// report counts a new report of a kept entry; changed says its state or reply changed.
func (t *Tracker) report(e *entry, changed bool, now time.Time, opts *Options) {
	if changed {
		e.since = now
	}
	e.seen = now
	e.reports = min(e.reports+1, 1<<30)
	if e.established {
		return
	}
	t.sketch.add(e.hash)
	if !t.establish(e, now, opts) {
		// Most recently seen: the last its source gives up.
		e.list.unlink(e)
		e.list.push(e)
	}
}

// establish makes a newcomer established once it has reported enough, over long enough, if the
// budget's established share has room; whether it did.
func (t *Tracker) establish(e *entry, now time.Time, opts *Options) bool {
	if e.reports < opts.MinReports || now.Sub(e.first) < opts.MinSpan || t.estBytes+e.cost > opts.MaxBytes-opts.MaxBytes/newcomerShareDiv {
		return false
	}
	e.list.unlink(e)
	t.newBytes -= e.cost
	t.estBytes += e.cost
	e.established = true
	if l := e.list; l.head == nil {
		delete(t.newcomers, l.key)
	}
	e.list = nil
	return true
}

// insert keeps e, a newcomer first reported at now, if the budget has room for it.
func (t *Tracker) insert(e *entry, now time.Time, opts *Options) {
	if now.Sub(t.lastSweep) >= min(opts.Window, time.Second) || now.Before(t.lastSweep) {
		t.sweep(now.Add(-opts.Window))
		t.lastSweep = now
	}
	newShare := opts.MaxBytes / newcomerShareDiv
	sourceShare := newShare / perSourceShareDiv
	e.hash = t.sketch.hash(e.line)
	count := t.sketch.add(e.hash)
	key := hostaddr.Prefix(e.line.source)
	l := t.newcomers[key]
	if l == nil {
		l = &newcomerList{key: key}
		t.newcomers[key] = l
	}
	oldest := now.Add(-opts.Window)
	for l.bytes+e.cost > sourceShare && l.head != nil {
		// The source's own newcomers make room, if one reported less often than this one
		// (ties keep what is kept: a flood of one-off reporters keeps out only its own kind).
		v := l.victim(t.sketch, oldest)
		if !v.seen.Before(oldest) && t.sketch.count(v.hash) >= count {
			break
		}
		t.remove(v)
		t.dropped.Add(1)
	}
	if l.bytes+e.cost > sourceShare || t.newBytes+e.cost > newShare || t.estBytes+t.newBytes+e.cost > opts.MaxBytes {
		if l.head == nil {
			delete(t.newcomers, key)
		}
		t.dropped.Add(1)
		return
	}
	t.entries[e.line] = e
	// Reports made while there was no room count, but the time they spanned is not known.
	e.first, e.seen, e.since, e.reports = now, now, now, max(1, min(count, opts.MinReports-1))
	t.newBytes += e.cost
	t.newcomers[key] = l // making room may have emptied it, and remove then let it go
	l.push(e)
	t.establish(e, now, opts)
}

// remove forgets e.
func (t *Tracker) remove(e *entry) {
	delete(t.entries, e.line)
	if e.established {
		t.estBytes -= e.cost
		return
	}
	l := e.list
	l.unlink(e)
	t.newBytes -= e.cost
	if l.head == nil {
		delete(t.newcomers, l.key)
	}
}

// sweep forgets every entry last seen before oldest.
func (t *Tracker) sweep(oldest time.Time) {
	for _, e := range t.entries {
		if e.seen.Before(oldest) {
			t.remove(e)
		}
	}
}

// interval is the mean time between the entry's reports: its load balancer's check interval.
func (e *entry) interval() float64 {
	if e.reports < 2 {
		return 0
	}
	return e.seen.Sub(e.first).Seconds() / float64(e.reports-1)
}
