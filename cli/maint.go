package cli

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hacheck/hacheck/lb"
	"github.com/hacheck/hacheck/spool"
)

// lbFlags reach the running server for what the load balancers see of a service.
type lbFlags struct {
	serverFlags
	Wait    bool          `help:"After writing, wait until every load balancer that checks the service reports the new state."`
	Timeout time.Duration `default:"60s" help:"How long --wait waits (exit 3 when it runs out)."`
}

// waitTimeoutError: --wait ran out of time; exit 3.
type waitTimeoutError struct{ msg string }

func (e *waitTimeoutError) Error() string { return e.msg }

// refusedError: the disruption guard refused the change; exit 4.
type refusedError struct{ msg string }

func (e *refusedError) Error() string { return e.msg }

// fetchLB asks the running server what the load balancers reported about service (and only the
// instance port, when not 0).
func fetchLB(ctx context.Context, serverPort int, service string, port int) (lb.Snapshot, error) {
	return newServerClient(serverPort).lb(ctx, service, port)
}

// guardFlags choose whether the disruption guard applies to a change that takes weight away
// (hadown, hacheck weight); see guardWanted.
type guardFlags struct {
	Force bool `xor:"guard" help:"Skip the disruption guard: write the mark even if a load balancer would lose its last usable server."`
	Guard bool `xor:"guard" help:"Run the disruption guard although no one is at a terminal (it is on by default at a terminal only): exit 4, nothing written, if a load balancer would lose its last usable server."`
}

// on reports whether the guard applies.
func (g guardFlags) on(e *Env) bool { return guardWanted(e, g.Force, g.Guard) }

// guardCheck is the disruption guard for writing marks, as the spool's PutAll runs it: under
// the spool's lock, given every mark the spool holds at that moment, so that what this host
// already did and the load balancers have not reported yet is counted (see lb.Guard), and no
// other change on this host slips in between the decision and the write. It asks the running
// server what the load balancers report of every service the marks or the spool name (every
// service checked recently for the host-wide mark). With no server to ask it warns and lets the
// change go ahead: no server also means no load balancer is getting a passing check from this
// host, so there is nothing the marks could disrupt.
//
// Before that, and before the lock is taken, it lets the load balancers that just began checking
// settle (settleGuard): if it cannot, the change is refused then, nothing written.
func guardCheck(e *Env, f lbFlags, marks []spool.Mark) func(spool.Set) error {
	if err := settleGuard(e, f, marks); err != nil {
		return func(spool.Set) error { return err }
	}
	return func(held spool.Set) error {
		snaps, minRemaining, err := guardReports(context.Background(), f.Port, lb.GuardServices(held, marks))
		var unreachable *unreachableError
		switch {
		case errors.As(err, &unreachable):
			e.infof("warning: disruption guard skipped: %v\n", err)
			return nil
		case err != nil:
			return fmt.Errorf("disruption guard: %w (--force skips it)", err)
		}
		if gerr := lb.Guard(snaps, held, held.With(marks...), e.Now(), minRemaining); gerr != nil {
			keys := make([]string, len(marks))
			for i, m := range marks {
				keys[i] = m.Key().String()
			}
			return &refusedError{fmt.Sprintf("refusing to take weight from %s: %v; nothing written (--force overrides)", strings.Join(keys, ", "), gerr)}
		}
		return nil
	}
}

// guardReports is what the load balancers reported of services (for "all", of every service
// checked recently), and the server's min_remaining_weight.
func guardReports(ctx context.Context, serverPort int, services []string) (snaps []lb.Snapshot, minRemaining int, err error) {
	services, err = expandAll(ctx, serverPort, services)
	if err != nil {
		return nil, 0, err
	}
	for _, svc := range services {
		snap, err := fetchLB(ctx, serverPort, svc, 0)
		if err != nil {
			return nil, 0, err
		}
		snaps, minRemaining = append(snaps, snap), snap.MinRemainingWeight
	}
	return snaps, minRemaining, nil
}

// settleGuard lets the load balancers that just began checking a service of the marks count,
// or go quiet (lb.SettleAll). Errors fetching are left to the guard itself, which reports them;
// still unsettled after lb.SettleMax, the change is refused.
func settleGuard(e *Env, f lbFlags, marks []spool.Mark) error {
	ctx := context.Background()
	services, err := expandAll(ctx, f.Port, lb.GuardServices(nil, marks))
	if err != nil {
		return nil
	}
	start := time.Now()
	waited, err := lb.SettleAll(ctx, services, waitInterval, func(ctx context.Context, svc string) (lb.Snapshot, error) {
		return fetchLB(ctx, f.Port, svc, 0)
	})
	var unsettled *lb.UnsettledError
	if errors.As(err, &unsettled) {
		return &refusedError{fmt.Sprintf("refusing to take weight from %s: %v; nothing written (--force overrides)", unsettled.Service, err)}
	}
	if len(waited) > 0 {
		e.infof("disruption guard waited %s for load balancers of %s that just began checking to count or go quiet\n",
			time.Since(start).Round(time.Millisecond), strings.Join(waited, ", "))
	}
	return nil
}

// waitFor waits, after the marks were written at the time given, until every load balancer that
// checks each service reported the new state, or f.Timeout passes.
func waitFor(e *Env, f lbFlags, services []string, port int, tgt lb.Target, sessions bool, at time.Time) error {
	ctx, cancel := context.WithTimeout(context.Background(), f.Timeout)
	defer cancel()
	start := time.Now()
	services, err := expandAll(ctx, f.Port, services)
	if err != nil {
		return usageErrorf("marks written, but cannot --wait: %v", err)
	}
	if len(services) == 0 {
		e.infof("no service was checked recently; nothing to wait for\n")
		return nil
	}
	var pending []string
	for _, svc := range services {
		c := lb.Change{Service: svc, Port: port, Target: tgt, At: at, Sessions: sessions}
		p, err := lb.Wait(ctx, c, waitInterval, func(ctx context.Context) (lb.Snapshot, error) {
			return fetchLB(ctx, f.Port, svc, port)
		})
		var unreachable *unreachableError
		switch {
		case errors.As(err, &unreachable):
			return usageErrorf("marks written, but cannot --wait: %v", err)
		case errors.Is(err, context.DeadlineExceeded):
			if len(p.Pending) == 0 {
				p.Pending = []string{"no answer from the server"}
			}
			for _, what := range p.Pending {
				if len(services) > 1 {
					what = spool.Key{Service: svc, Port: port}.String() + ": " + what
				}
				pending = append(pending, what)
			}
			continue
		case err != nil:
			return fmt.Errorf("marks written, but cannot --wait: %w", err)
		}
		what := tgt.String()
		if sessions && tgt != lb.Up {
			what += " with no sessions"
		}
		if p.Nobody {
			e.infof("no load balancer checked %s recently; nothing to wait for%s\n", spool.Key{Service: svc, Port: port}, unconfirmedNote(p.Unconfirmed))
		} else {
			e.infof("%s: %s on %d server line(s) and %d agent(s) after %s\n",
				spool.Key{Service: svc, Port: port}, what, p.Lines, p.Agents, time.Since(start).Round(time.Millisecond))
		}
	}
	if len(pending) > 0 {
		return &waitTimeoutError{fmt.Sprintf("timed out after %s: not %s on: %s", f.Timeout, tgt, strings.Join(pending, "; "))}
	}
	return nil
}

// unconfirmedNote says why reporters seen did not count: a load balancer counts once it has
// checked repeatedly, and one that just started (or checks hacheck just restarted) is waited
// for (lb.Settle); these went quiet instead.
func unconfirmedNote(n int) string {
	if n == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d reporter(s) seen that have not checked repeatedly, as a load balancer does, and none for %s, do not count)", n, lb.Settle)
}

// waitInterval is how often --wait asks the server; HAProxy's checks come every few hundred
// milliseconds at the shortest.
const waitInterval = 50 * time.Millisecond

// recentWindow is how far back expandAll looks for services: several of HAProxy's usual check
// intervals, as the server's lb_window.
const recentWindow = 60

// expandAll replaces the host-wide mark "all", which load balancers never ask about by that
// name, with every service the running server answered checks for within recentWindow
// seconds: those are what the host-wide mark takes out.
func expandAll(ctx context.Context, serverPort int, services []string) ([]string, error) {
	if !slices.Contains(services, spool.AllServices) {
		return services, nil
	}
	recent, _, err := newServerClient(serverPort).recent(ctx, recentWindow)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, svc := range services {
		if svc != spool.AllServices {
			out = append(out, svc)
		}
	}
	for _, seen := range recent.SeenServices {
		if spool.ValidateName(seen.Service) == nil && !slices.Contains(out, seen.Service) {
			out = append(out, seen.Service)
		}
	}
	return out, nil
}
