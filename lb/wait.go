// Waiting for a change: when has every load balancer that checks a service seen a change of
// its spool mark? It judges only from what the load balancers report themselves (GET
// /lb/<service>): the state word of HAProxy's send-state header on every health check, and
// the agent-check replies they fetched. The CLI's --wait and the server's POST wait= share it.

package lb

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hacheck/hacheck/spool"
)

// Target is the state a change asks of the load balancers.
type Target int

const (
	// Down: a down mark; health checks answer 503, agents "maint".
	Down Target = iota
	// Drain: a drain mark; health checks answer 404 (NOLB with disable-on-404), agents "drain".
	Drain
	// Up: no mark; health checks pass, agents "ready".
	Up
)

func (t Target) String() string {
	switch t {
	case Down:
		return "DOWN"
	case Drain:
		return "NOLB"
	default:
		return "UP"
	}
}

// Change is a spool change to wait for.
type Change struct {
	Service string
	Port    int // 0: the whole service, every port
	Target  Target
	// At is when the mark was written (or removed): only reports made after it count.
	At time.Time
	// Sessions also waits, for Down and Drain, until the server lines report no current
	// sessions.
	Sessions bool
}

// Settle is how long a reporter that does not count yet (Snapshot.Unconfirmed) holds back the
// conclusion that nobody checks a service. Just after hacheck starts, and just after a load
// balancer does, no load balancer counts for a few check intervals; concluding "nobody" then
// would let --wait return at once and the guard let the last server go, which is saying what
// hacheck does not know. So while nobody counts but such a reporter was seen within Settle,
// --wait and the guard keep asking until one counts (and is then waited on, or decides) or none
// has been seen for Settle. It is longer than HAProxy's usual check interval, so a real load
// balancer reports again within it; a one-off nc or curl goes quiet and costs at most Settle,
// and only on a service no established load balancer checks.
const Settle = 5 * time.Second

// Unsettled reports whether nobody counts in s, but a reporter that does not count yet was seen
// within Settle before the snapshot (by the snapshot's own clock).
func Unsettled(s Snapshot) bool {
	return len(s.Servers) == 0 && len(s.Agents) == 0 && s.Omitted == 0 &&
		s.UnconfirmedLastSeen > 0 && s.Now-s.UnconfirmedLastSeen < Settle.Seconds()
}

// SettleMax bounds Settle's wait for the guard: a load balancer counts after a few of its
// check intervals, which are seconds at most; something that still does not count by then keeps
// reporting unlike one.
const SettleMax = 30 * time.Second

// UnsettledError is SettleAll running out: reporters of Service seen within Settle still did
// not count after SettleMax.
type UnsettledError struct{ Service string }

func (e *UnsettledError) Error() string {
	return fmt.Sprintf("reporters of %s seen in the last %s still do not count after %s, as no load balancer's checks would",
		e.Service, Settle, SettleMax)
}

// SettleAll asks fetch, every interval, for each service's snapshot until none is Unsettled, so
// that the guard does not call a backend unwatched that a load balancer, checking since hacheck
// or it started, is about to be counted for. It returns the services it had to wait for; an
// *UnsettledError when SettleMax (or ctx) ran out first; fetch's error as it is.
func SettleAll(ctx context.Context, services []string, interval time.Duration, fetch func(context.Context, string) (Snapshot, error)) (waited []string, err error) {
	ctx, cancel := context.WithTimeout(ctx, SettleMax)
	defer cancel()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for _, svc := range services {
		for first := true; ; first = false {
			snap, err := fetch(ctx, svc)
			if err != nil && ctx.Err() == nil {
				return waited, err
			}
			if err == nil && !Unsettled(snap) {
				break
			}
			if first {
				waited = append(waited, svc)
			}
			select {
			case <-ctx.Done():
				return waited, &UnsettledError{svc}
			case <-tick.C:
			}
		}
	}
	return waited, nil
}

// Progress is how far the load balancers are.
type Progress struct {
	// Done: every server line and agent waited on reported the new state after the change.
	Done bool
	// Nobody: no load balancer checked the service within the window, and no reporter that
	// does not count yet was seen within Settle; Done is then true.
	Nobody bool
	// Lines and Agents count what is waited on.
	Lines, Agents int
	// Unconfirmed counts, in the latest snapshot, the reporters that do not count (yet):
	// they have not checked repeatedly (Snapshot.Unconfirmed).
	Unconfirmed int
	// Pending names each server line or agent not there yet, e.g.
	// `lb2 be_web/app1 (UP 1/2, 0.2s ago)`, sorted.
	Pending []string
}

type waitLineKey struct {
	node, source, server string
	port                 int
}

type waitAgentKey struct {
	source string
	port   int
}

// Waiter follows one change over successive snapshots. The set it waits on is every server
// line and agent that appeared in any snapshot since the first: one that stops reporting
// (its load balancer stopped, or lost its way to this host) stays pending rather than
// dropping out of the window and counting as done.
type Waiter struct {
	change Change
	at     float64
	lines  map[waitLineKey]Server
	agents map[waitAgentKey]Agent
	// after holds, per line and agent, the first report after the change seen in its current
	// run (keyed by the run's start), for a run that began before the change.
	after map[any]runStart
}

type runStart struct{ since, first float64 }

// NewWaiter starts waiting for c.
func NewWaiter(c Change) *Waiter {
	return &Waiter{
		change: c,
		at:     float64(c.At.UnixNano()) / 1e9,
		lines:  map[waitLineKey]Server{},
		agents: map[waitAgentKey]Agent{},
		after:  map[any]runStart{},
	}
}

// Update takes the latest snapshot of the service and says how far the change got.
func (w *Waiter) Update(s Snapshot) Progress {
	for _, srv := range s.Servers {
		if !w.concerns(srv.Port) {
			continue
		}
		k := waitLineKey{srv.Node, srv.Source, srv.Server, srv.Port}
		if old, ok := w.lines[k]; !ok || srv.LastSeen >= old.LastSeen {
			w.lines[k] = srv
			w.noteAfter(k, srv.LastSeen, srv.StateSince)
		}
	}
	for _, a := range s.Agents {
		if !w.concerns(a.Port) {
			continue
		}
		k := waitAgentKey{a.Source, a.Port}
		if old, ok := w.agents[k]; !ok || a.LastSeen >= old.LastSeen {
			w.agents[k] = a
			w.noteAfter(k, a.LastSeen, a.ReplySince)
		}
	}
	p := Progress{Lines: len(w.lines), Agents: len(w.agents), Unconfirmed: s.Unconfirmed}
	if len(w.lines) == 0 && len(w.agents) == 0 {
		// Nobody counts (a line or agent, once seen, stays waited on): done, unless a
		// reporter that does not count yet may be a load balancer about to.
		if Unsettled(s) {
			p.Pending = []string{fmt.Sprintf("%d reporter(s) that do not count yet, the last %s, may be load balancers that just began checking",
				s.Unconfirmed, ago(s.Now, s.UnconfirmedLastSeen))}
			return p
		}
		p.Done, p.Nobody = true, true
		return p
	}
	now := s.Now
	for _, srv := range w.lines {
		if !w.lineDone(srv) {
			p.Pending = append(p.Pending, fmt.Sprintf("%s %s (%s)", lbName(srv.Node, srv.Source), srv.Server, w.lineSaid(srv, now)))
		}
	}
	for _, a := range w.agents {
		if !w.agentDone(a) {
			p.Pending = append(p.Pending, fmt.Sprintf("agent check from %s for %s (%s)", a.Source, spool.Key{Service: w.change.Service, Port: a.Port}, w.agentSaid(a, now)))
		}
	}
	slices.Sort(p.Pending)
	p.Done = len(p.Pending) == 0
	return p
}

// concerns: a whole-service change reaches every port; a change of one instance reaches the
// server lines of that port and the agents asking for exactly that instance (an agent asking
// for the whole service is not answered from an instance's mark).
func (w *Waiter) concerns(port int) bool {
	if w.change.Port == 0 {
		return true
	}
	return port == w.change.Port
}

// A report's word is taken once it has held for (most of) a check interval after the change. Any
// client allowed to ask for a check can send a header, including from a load balancer's own
// address with its node and server names; but HAProxy reports every interval, so a run of
// reports that covers an interval holds one of HAProxy's own, and a run is broken by any
// report that says otherwise. A lone forged DOWN, or a burst of them, is followed by HAProxy's
// own UP and ends nothing; what it costs is about one check interval more before --wait
// returns. A sender at the load balancer's address that keeps sending what HAProxy would
// send, spaced as HAProxy spaces its checks, cannot be told from HAProxy: lb_sources (and who
// may log in on the load balancers) is what limits that.
//
// settled: the reporter's current run (since) has, after the change, lasted an interval. A
// run that began before the change (the state already held) counts from the first report
// after it that this Waiter saw. A server that predates runs (since 0) is taken at its first
// report after the change.
func (w *Waiter) settled(k any, last, since, interval float64) bool {
	if last <= w.at {
		return false
	}
	if since == 0 {
		return true
	}
	start := since
	if since <= w.at {
		r, ok := w.after[k]
		if !ok || r.since != since {
			return false
		}
		start = r.first
	}
	return last-start >= runShare*interval && last > start
}

// runShare is how much of the mean check interval a run must cover: HAProxy's checks come
// a little early or late (the check's own time, spread-checks), and a whole mean interval
// would, half the time, wait for one more check.
const runShare = 0.8

// noteAfter remembers the first report after the change of a run that began before it.
func (w *Waiter) noteAfter(k any, last, since float64) {
	if last <= w.at || since > w.at {
		return
	}
	if r, ok := w.after[k]; !ok || r.since != since {
		w.after[k] = runStart{since, last}
	}
}

// lineDone: the line's own headers, sent after the change, carry the state wanted (settled). After a
// drain, DOWN counts too: HAProxy keeps a DOWN server DOWN on a 404, and it gets no traffic
// either way. A line that an agent of the same load balancer put into MAINT is no longer
// health-checked, so for a down mark that agent's reply speaks for it.
func (w *Waiter) lineDone(srv Server) bool {
	k := waitLineKey{srv.Node, srv.Source, srv.Server, srv.Port}
	if w.settled(k, srv.LastSeen, srv.StateSince, srv.IntervalSeconds) && stateReached(w.change.Target, srv.State) {
		return !w.change.Sessions || w.change.Target == Up || srv.Scur == 0
	}
	if w.change.Target != Down || w.change.Sessions {
		return false
	}
	for _, a := range w.agents {
		if a.Source == srv.Source && (a.Port == 0 || a.Port == srv.Port) && w.agentDone(a) && a.LastSeen > srv.LastSeen {
			return true
		}
	}
	return false
}

func stateReached(t Target, state string) bool {
	switch t {
	case Down:
		return state == "DOWN"
	case Drain:
		return state == "NOLB" || state == "DOWN"
	default:
		return state == "UP"
	}
}

// agentDone: the agent fetched, after the change, a reply that says the new state.
func (w *Waiter) agentDone(a Agent) bool {
	if !w.settled(waitAgentKey{a.Source, a.Port}, a.LastSeen, a.ReplySince, a.IntervalSeconds) {
		return false
	}
	words := ReplyWords(a.Reply)
	switch w.change.Target {
	case Down:
		return slices.Contains(words, "maint")
	case Drain:
		return slices.Contains(words, "drain")
	default:
		return slices.Contains(words, "ready")
	}
}

// ReplyWords are the lowercased words of an agent reply before its "#" comment, as HAProxy
// reads them: separated by spaces, tabs or commas.
func ReplyWords(reply string) []string {
	reply, _, _ = strings.Cut(reply, "#")
	return strings.FieldsFunc(strings.ToLower(reply), func(r rune) bool { return r == ' ' || r == '\t' || r == ',' || r == '\n' || r == '\r' })
}

func (w *Waiter) lineSaid(srv Server, now float64) string {
	state := srv.State
	if srv.Counters != "" {
		state += " " + srv.Counters
	}
	if srv.LastSeen <= w.at {
		return "no check since the change; last said " + state + " " + ago(now, srv.LastSeen)
	}
	if stateReached(w.change.Target, srv.State) {
		if !w.settled(waitLineKey{srv.Node, srv.Source, srv.Server, srv.Port}, srv.LastSeen, srv.StateSince, srv.IntervalSeconds) {
			return state + " " + ago(now, srv.LastSeen) + ", not yet for a whole check interval"
		}
		return fmt.Sprintf("%s with %d sessions %s", state, srv.Scur, ago(now, srv.LastSeen))
	}
	return state + " " + ago(now, srv.LastSeen)
}

func (w *Waiter) agentSaid(a Agent, now float64) string {
	reply := strings.TrimSpace(a.Reply)
	if len(reply) > 40 {
		reply = reply[:40] + "..."
	}
	if a.LastSeen <= w.at {
		return fmt.Sprintf("no fetch since the change; last got %q %s", reply, ago(now, a.LastSeen))
	}
	return fmt.Sprintf("got %q %s", reply, ago(now, a.LastSeen))
}

func ago(now, then float64) string {
	d := now - then
	if math.IsNaN(d) || d < 0 {
		d = 0
	}
	return strconv.FormatFloat(d, 'f', 1, 64) + "s ago"
}

func lbName(node, source string) string {
	if node == "" {
		return source
	}
	return node
}

// Wait asks fetch for a snapshot every interval until the change is done (or nobody checks
// the service), ctx ends, or fetch fails. It returns the last progress seen; on ctx's end the
// error is ctx.Err().
func Wait(ctx context.Context, c Change, interval time.Duration, fetch func(context.Context) (Snapshot, error)) (Progress, error) {
	w := NewWaiter(c)
	var last Progress
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		s, err := fetch(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return last, ctx.Err()
			}
			return last, err
		}
		last = w.Update(s)
		if last.Done {
			return last, nil
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-tick.C:
		}
	}
}
