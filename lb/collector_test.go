package lb

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestCollector(t *testing.T) {
	now := time.Now()
	tr := NewTracker(Options{})
	start := now.Add(-2 * time.Second)
	establish(tr, "web", 8080, header("UP", "be/w1", "lb1"), lbA, start)
	establish(tr, "web", 8080, header("UP", "be/w1", "lb2"), lbB, start)
	establish(tr, "web", 9090, header("NOLB", "be/w2", "lb1"), lbA, start)
	establish(tr, "api", 1, header("DOWN 1/2", "api/a", "lb1"), lbA, start)
	tr.Record("once", 1, header("UP", "f/a", "lb1"), 0, evil, now) // a one-off: not counted
	c := NewCollector(tr)
	want := `
# HELP hacheck_lb_dropped_total Send-state headers and agent replies not kept, or pushed out, because the load balancer tracker's memory budget for reporters not yet established was taken.
# TYPE hacheck_lb_dropped_total counter
hacheck_lb_dropped_total 0
# HELP hacheck_lb_server_state Load balancer server lines (HAProxy instance and backend/server) that check the service repeatedly and whose last check within lb_window reported the state, from X-Haproxy-Server-State; states other than UP, DOWN, NOLB and "no check" count as "other".
# TYPE hacheck_lb_server_state gauge
hacheck_lb_server_state{service="api",state="DOWN"} 1
hacheck_lb_server_state{service="web",state="NOLB"} 1
hacheck_lb_server_state{service="web",state="UP"} 2
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) != 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}
}
