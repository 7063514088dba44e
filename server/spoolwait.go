package server

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/hacheck/hacheck/lb"
	"github.com/hacheck/hacheck/spool"
)

// maxSpoolWait bounds POST /spool's wait=: the server's write timeout leaves room for it.
const maxSpoolWait = 300 * time.Second

// spoolWaitInterval is how often a waiting POST looks at what the load balancers reported.
const spoolWaitInterval = 50 * time.Millisecond

// spoolOptions are POST /spool's safe-maintenance fields; both are off unless asked for, so
// existing clients see no change.
type spoolOptions struct {
	guard bool          // guard=1: refuse (409) what hadown would refuse
	wait  time.Duration // wait=<seconds>: answer once the load balancers saw it
}

func parseSpoolOptions(form url.Values) (spoolOptions, error) {
	var o spoolOptions
	switch g := form.Get("guard"); g {
	case "", "0", "false":
	case "1", "true":
		o.guard = true
	default:
		return o, fmt.Errorf("guard must be 1 or 0, got %q", g)
	}
	if text := form.Get("wait"); text != "" {
		sec, err := strconv.ParseFloat(text, 64)
		if err != nil || !(sec > 0) || sec > maxSpoolWait.Seconds() {
			return o, fmt.Errorf("wait must be a number of seconds above 0 and at most %.0f, got %q", maxSpoolWait.Seconds(), text)
		}
		o.wait = time.Duration(sec * float64(time.Second))
	}
	return o, nil
}

// guardChange is the disruption guard hadown applies, for writing m when the spool holds held
// (called under the spool's lock), from what this server's load balancers reported of every
// service m or the spool names: nil, or a *lb.GuardError naming each backend and load balancer.
func (s *Server) guardChange(held spool.Set, m spool.Mark) error {
	now := time.Now()
	services := s.guardServices(held, m, now)
	snaps := make([]lb.Snapshot, 0, len(services))
	for _, svc := range services {
		snaps = append(snaps, s.lb.Snapshot(svc, 0, now))
	}
	return lb.Guard(snaps, held, held.With(m), now, int(s.cfg.Load().MinRemainingWeight))
}

// guardServices is lb.GuardServices with the host-wide mark replaced by the services checked
// recently: load balancers ask for them by name.
func (s *Server) guardServices(held spool.Set, m spool.Mark, now time.Time) []string {
	services := lb.GuardServices(held, []spool.Mark{m})
	if i := slices.Index(services, spool.AllServices); i >= 0 {
		services = slices.Delete(services, i, i+1)
		for _, r := range s.metrics.Recent(now.Add(-s.lb.Window())) {
			if spool.ValidateName(r.Service) == nil && !slices.Contains(services, r.Service) {
				services = append(services, r.Service)
			}
		}
	}
	return services
}

// settleGuard lets the load balancers that just began checking a service m names count, or go
// quiet, before the guard decides (lb.SettleAll), as hadown's guard does: just after a restart
// nobody counts yet, and the guard would let the last server go. Done before the spool's lock
// is taken, so that other changes are not held up meanwhile.
func (s *Server) settleGuard(ctx context.Context, m spool.Mark) error {
	_, err := lb.SettleAll(ctx, s.guardServices(nil, m, time.Now()), spoolWaitInterval, func(_ context.Context, svc string) (lb.Snapshot, error) {
		return s.lb.Snapshot(svc, 0, time.Now()), nil
	})
	return err
}

// waitResult is the "wait" member of a POST /spool answer.
type waitResult struct {
	Done    bool     `json:"done"`
	Nobody  bool     `json:"nobody"` // no load balancer checked the service within the window
	Lines   int      `json:"lines"`
	Agents  int      `json:"agents"`
	Pending []string `json:"pending"` // each server line or agent not there yet
}

// waitChange waits up to d for every load balancer that checks (service, port) to report the
// change made at the time given, as hadown --wait does. ok is false when the time ran out or
// the client went away.
func (s *Server) waitChange(ctx context.Context, service string, port int, target lb.Target, at time.Time, d time.Duration) waitResult {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	c := lb.Change{Service: service, Port: port, Target: target, At: at}
	p, _ := lb.Wait(ctx, c, spoolWaitInterval, func(context.Context) (lb.Snapshot, error) {
		return s.lb.Snapshot(service, port, time.Now()), nil
	})
	if p.Pending == nil {
		p.Pending = []string{}
	}
	return waitResult{Done: p.Done, Nobody: p.Nobody, Lines: p.Lines, Agents: p.Agents, Pending: p.Pending}
}
