package lb

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Refusal is one backend on one load balancer that taking the server out would leave with
// Remaining usable weight: 0, or below the minimum asked for.
type Refusal struct {
	Node    string // the load balancer (HAProxy's node name)
	Source  string // the address its checks come from
	Backend string
	// Removed is the weight the lines taken out carry there, Total the backend's total usable
	// weight, Remaining what is left: Total - Removed, never below 0.
	Removed, Total, Remaining int
}

func (r Refusal) String() string {
	if r.Remaining == 0 {
		return fmt.Sprintf("backend %s on load balancer %s would have no usable server left (weight %d of %d taken out)",
			r.Backend, r.Node, r.Removed, r.Total)
	}
	return fmt.Sprintf("backend %s on load balancer %s would keep weight %d of %d",
		r.Backend, r.Node, r.Remaining, r.Total)
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

// Guard says whether taking this host's servers out of the given lines would leave a backend
// without usable weight. Lines are taken together per load balancer (node and source) and
// backend, since a whole-service mark takes every instance on this host out at once: what is
// left is the backend's total usable weight (weight=w/total) less the weights of those lines.
// It returns a *GuardError when that is 0, or below minRemaining when minRemaining is above 0,
// for any of them; nil otherwise.
//
// Only lines whose state is UP (with or without rise/fall counters) remove weight: a line that
// is DOWN, NOLB (draining) or unchecked takes no new traffic already, so taking it out changes
// nothing for its backend, and a group with nothing to remove is never refused. The caller
// picks the lines: the service's within the window, for the port being taken out (all ports
// for a whole-service mark).
func Guard(servers []Server, minRemaining int) error {
	type groupKey struct{ node, source, backend string }
	groups := map[groupKey]*Refusal{}
	for _, s := range servers {
		k := groupKey{s.Node, s.Source, s.Backend()}
		g := groups[k]
		if g == nil {
			g = &Refusal{Node: s.Node, Source: s.Source, Backend: k.backend}
			groups[k] = g
		}
		// The lines of one backend report the same total, but not at the same moment.
		g.Total = max(g.Total, s.TotalWeight)
		if s.State == WordUp && s.Weight > 0 {
			g.Removed += s.Weight
		}
	}
	var refused []Refusal
	for _, g := range groups {
		if g.Removed == 0 {
			continue
		}
		g.Remaining = max(g.Total-g.Removed, 0)
		if g.Remaining == 0 || g.Remaining < minRemaining {
			refused = append(refused, *g)
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
