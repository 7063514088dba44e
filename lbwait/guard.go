package lbwait

import (
	"fmt"
	"sort"
	"strings"
)

// Guard refuses (with one line naming each backend and load balancer) when taking down the
// given server lines would leave one of their backends, on one load balancer, with no usable
// weight, or with less than minRemaining. Lines of one backend on one load balancer are taken
// together: a whole-service mark takes every instance on this host down at once.
func Guard(servers []Server, minRemaining int) error {
	type group struct {
		node, source, backend string
		total, removed        int
	}
	groups := map[[3]string]*group{}
	for _, s := range servers {
		backend, _, _ := strings.Cut(s.Server, "/")
		k := [3]string{s.Node, s.Source, backend}
		g := groups[k]
		if g == nil {
			g = &group{node: s.Node, source: s.Source, backend: backend}
			groups[k] = g
		}
		g.total = max(g.total, s.TotalWeight)
		// Only a line HAProxy holds UP adds to the usable weight; one already DOWN or
		// draining takes nothing more away.
		if s.State == "UP" {
			g.removed += s.Weight
		}
	}
	var refused []string
	for _, g := range groups {
		if g.removed == 0 {
			continue
		}
		left := g.total - g.removed
		switch {
		case left <= 0:
			refused = append(refused, fmt.Sprintf("%s on %s would have no usable server left", g.backend, lbName(g.node, g.source)))
		case left < minRemaining:
			refused = append(refused, fmt.Sprintf("%s on %s would keep weight %d of %d, below min_remaining_weight %d", g.backend, lbName(g.node, g.source), left, g.total, minRemaining))
		}
	}
	if len(refused) == 0 {
		return nil
	}
	sort.Strings(refused)
	return fmt.Errorf("%s", strings.Join(refused, "; "))
}
