package lb

import (
	"fmt"
)

// GuardError is Guard's refusal: taking the server out would leave Backend on Node with
// Remaining usable weight, which is 0 or below the minimum asked for.
type GuardError struct {
	Node      string // the load balancer
	Backend   string
	Server    string // "<backend>/<server>"
	Weight    int    // this server's weight on that load balancer
	Total     int    // the backend's total usable weight there
	Remaining int    // Total - Weight
	Min       int    // the minimum asked for (0: only the last usable server is protected)
}

func (e *GuardError) Error() string {
	if e.Remaining <= 0 {
		return fmt.Sprintf("%s is the last usable server of backend %s on load balancer %s (weight %d/%d)",
			e.Server, e.Backend, e.Node, e.Weight, e.Total)
	}
	return fmt.Sprintf("taking %s out would leave backend %s on load balancer %s with weight %d, below the minimum %d",
		e.Server, e.Backend, e.Node, e.Remaining, e.Min)
}

// Guard says whether taking this host's server out of the given lines would leave a backend
// without usable weight: it returns a *GuardError for the first line (in the order given) where
// total_weight - weight would be 0, or below minRemaining when that is above 0.
//
// Only lines whose state is UP (with or without rise/fall counters) and whose weight is above 0
// count: a line that is DOWN, NOLB or unchecked, or that has weight 0, already takes no new
// traffic, so taking it out changes nothing for its backend and is never refused. The caller
// picks the lines (the service's, within the window, for the port being taken down).
func Guard(servers []Server, minRemaining int) error {
	for _, s := range servers {
		if s.State != WordUp || s.Weight <= 0 {
			continue
		}
		remaining := s.TotalWeight - s.Weight
		if remaining <= 0 || remaining < minRemaining {
			return &GuardError{Node: s.Node, Backend: s.Backend(), Server: s.Server, Weight: s.Weight,
				Total: s.TotalWeight, Remaining: max(remaining, 0), Min: minRemaining}
		}
	}
	return nil
}
