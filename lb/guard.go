package lb

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hacheck/hacheck/spool"
)

// The disruption guard: would a change of this host's spool leave a backend, on some load
// balancer, without usable weight (or below a minimum)?
//
// HAProxy's send-state header gives, on every check of a server line, weight=w/total: the
// line's weight over its backend's total usable weight. What the guard cannot take from the
// header as it is, is what this host did in the last (fall+1)×inter: a mark already written
// whose checks have not yet failed often enough for HAProxy to act. So the rule, per load
// balancer and backend, over the lines of this host that it reported within the window:
//
//	remaining = total − Σ (usable − keeps(after))
//
//   - total is the backend's total usable weight as the most recent of those reports gives it
//     (older reports of the same backend may predate a change of the total);
//   - usable is the weight a line counts with there as last reported: its weight when UP
//     (rise/fall counters or not), and also when DOWN with counters, a rise under way that may
//     have ended since; 0 otherwise (DOWN, NOLB, MAINT, no check), since those are out of the
//     total already;
//   - keeps(after) is what the line will keep once the spool as it will be after the change
//     reaches the load balancer: 0 when a mark holds it down or drains it (the host-wide mark,
//     the service's or the instance's, the change's own or one written earlier), usable×p/100
//     (rounded down, as HAProxy scales a weight) under a weight-only mark of p% below 100,
//     usable otherwise. A weight the line's load balancer has applied already (its agent check
//     was told it before the line's last report) is not taken off again.
//
// A line of this host that the change leaves in but whose last check hacheck failed (its service
// is failing: HAProxy takes it out after fall such checks, and says UP until the one before
// the last) is about to leave on its own: what it keeps is taken off the remainder too.
//
// So a mark this host wrote a moment ago, for another port of the service or another service
// behind the same backend, is taken off the remainder as long as the load balancer still
// reports the line usable, and not twice once it reports it out. The change is refused when,
// on some load balancer and backend where it takes weight away (what the lines keep after is
// less than what they keep under the spool as it is), the remainder is 0 or below the minimum.
// A backend the change does not touch is never the reason for a refusal, even if earlier
// changes (forced) emptied it. Counting errs on the side of refusing: a weight mark counts
// even on a load balancer that never applies it (no agent check).
//
// What it cannot know: another host's change in flight (its marks are not in this spool), and
// a load balancer that has not checked this host within the window.

// Refusal is one backend on one load balancer that the change would leave with Remaining usable
// weight: 0, or below the minimum asked for.
type Refusal struct {
	Node    string // the load balancer (HAProxy's node name)
	Source  string // the address its checks come from
	Backend string
	// Removed is the weight this host's lines would have taken out there, Total the backend's
	// total usable weight, Remaining what is left: Total - Removed - Failing, never below 0.
	// Already is the part of Removed that marks already in the spool take out and the load
	// balancer has not reported yet; Failing the weight of this host's lines the change leaves
	// in whose last check hacheck failed, about to leave on their own.
	Removed, Already, Failing, Total, Remaining int
}

func (r Refusal) String() string {
	var b strings.Builder
	if r.Remaining == 0 {
		fmt.Fprintf(&b, "backend %s on load balancer %s would have no usable server left (weight %d of %d taken out",
			r.Backend, r.Node, r.Removed, r.Total)
	} else {
		fmt.Fprintf(&b, "backend %s on load balancer %s would keep weight %d of %d (weight %d taken out",
			r.Backend, r.Node, r.Remaining, r.Total, r.Removed)
	}
	if r.Already > 0 {
		fmt.Fprintf(&b, ", %d of it by marks already on this host that it has not reported yet", r.Already)
	}
	if r.Failing > 0 {
		fmt.Fprintf(&b, ", %d more by servers failing their checks", r.Failing)
	}
	b.WriteString(")")
	return b.String()
}

// GuardError is Guard's refusal, one entry per backend and load balancer, sorted by node and
// backend. Its message is one line.
type GuardError struct {
	Refusals []Refusal
	Min      int // the minimum asked for (0: only the last usable server is protected)
}

func (e *GuardError) Error() string {
	parts := make([]string, len(e.Refusals))
	for i, r := range e.Refusals {
		parts[i] = r.String()
		if r.Remaining > 0 {
			parts[i] += fmt.Sprintf(", below min_remaining_weight %d", e.Min)
		}
	}
	return strings.Join(parts, "; ")
}

// Guard applies the rule above to a change that takes this host's spool from before to after,
// judged at now, with the load balancers' reports of every service the change may touch (the
// snapshots of whole services, every port: a mark on another port counts). It returns a
// *GuardError when some load balancer and backend the change takes weight from would be left
// with 0, or with less than minRemaining when that is above 0; nil otherwise.
func Guard(snaps []Snapshot, before, after spool.Set, now time.Time, minRemaining int) error {
	type groupKey struct{ node, source, backend string }
	type group struct {
		Refusal
		latest                float64 // when the report giving Total was made
		usable, before, after int
	}
	type lineKey struct {
		service, node, source, server string
		port                          int
	}
	groups := map[groupKey]*group{}
	seen := map[lineKey]bool{}
	for _, snap := range snaps {
		for _, s := range snap.Servers {
			lk := lineKey{snap.Service, s.Node, s.Source, s.Server, s.Port}
			if seen[lk] {
				continue
			}
			seen[lk] = true
			k := groupKey{s.Node, s.Source, s.Backend()}
			g := groups[k]
			if g == nil {
				g = &group{Refusal: Refusal{Node: s.Node, Source: s.Source, Backend: k.backend}, latest: s.LastSeen}
				groups[k] = g
			}
			if s.LastSeen >= g.latest {
				g.latest, g.Total = s.LastSeen, s.TotalWeight
			}
			u := usable(s)
			g.usable += u
			g.before += keeps(u, before, snap, s, now)
			a := keeps(u, after, snap, s, now)
			g.after += a
			if s.LastCode != 0 && (s.LastCode < 200 || s.LastCode > 299) {
				g.Failing += a
			}
		}
	}
	var refused []Refusal
	for _, g := range groups {
		if g.after >= g.before {
			continue // the change takes nothing away here
		}
		g.Removed, g.Already = g.usable-g.after, g.usable-g.before
		g.Remaining = max(g.Total-g.Removed-g.Failing, 0)
		if g.Remaining == 0 || g.Remaining < minRemaining {
			refused = append(refused, g.Refusal)
		}
	}
	if len(refused) == 0 {
		return nil
	}
	slices.SortFunc(refused, func(a, b Refusal) int {
		return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.Backend, b.Backend), cmp.Compare(a.Source, b.Source))
	})
	return &GuardError{Refusals: refused, Min: minRemaining}
}

// GuardServices is the services whose reports Guard must be given for a change writing marks
// when the spool holds held: those the marks name, and those the marks already held name (one of
// them may share a backend with the change's), sorted, each once. The host-wide mark "all" is
// among them as it is: load balancers never ask for it by that name, so the caller replaces it
// with the services checked recently.
func GuardServices(held spool.Set, marks []spool.Mark) []string {
	var out []string
	for k := range held {
		out = append(out, k.Service)
	}
	for _, m := range marks {
		out = append(out, m.Service)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// usable is the weight a line counts with in its backend's total, as last reported.
func usable(s Server) int {
	switch {
	case s.State == WordUp, s.State == WordDown && s.Counters != "":
		return s.Weight
	}
	return 0
}

// keeps is the usable weight u of the line s of snap's service once marks reach its load
// balancer.
func keeps(u int, marks spool.Set, snap Snapshot, s Server, now time.Time) int {
	m, down := marks.Status(snap.Service, s.Port, now)
	switch {
	case down:
		return 0
	case m.WeightOnly() && *m.Weight < 100 && !weighted(snap.Agents, s, *m.Weight):
		return u * *m.Weight / 100
	}
	return u
}

// weighted: the line's weight already is pct% of what it was. Its load balancer's agent check
// (same source) has been told pct% since before the line's last report, and HAProxy applies an
// agent's weight as it reads the reply.
func weighted(agents []Agent, s Server, pct int) bool {
	word := strconv.Itoa(pct) + "%"
	for _, a := range agents {
		if a.Source == s.Source && (a.Port == s.Port || a.Port == 0) && a.ReplySince > 0 && a.ReplySince < s.LastSeen &&
			slices.Contains(ReplyWords(a.Reply), word) {
			return true
		}
	}
	return false
}
