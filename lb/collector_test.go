package lb

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestCollector(t *testing.T) {
	now := time.Now()
	tr := NewTracker(Options{MaxKeys: 3}) // pairs: web 8080, web 9090, api 1
	tr.Record("web", 8080, header("UP", "be/w1", "lb1"), lbA, now)
	tr.Record("web", 8080, header("UP", "be/w1", "lb2"), lbB, now)
	tr.Record("web", 9090, header("NOLB", "be/w2", "lb1"), lbA, now)
	tr.Record("api", 1, header("DOWN 1/2", "api/a", "lb1"), lbA, now)
	tr.Record("full", 1, header("UP", "f/a", "lb1"), lbA, now) // a third pair: dropped
	c := NewCollector(tr)
	want := `
# HELP hacheck_lb_dropped_total Send-state headers and agent replies not kept because max_services (service and port pairs) or max_source_ips (lines of one pair) were all taken within lb_window.
# TYPE hacheck_lb_dropped_total counter
hacheck_lb_dropped_total 1
# HELP hacheck_lb_server_state Load balancer server lines (HAProxy instance and backend/server) whose last check of the service within lb_window reported the state, from X-Haproxy-Server-State; states other than UP, DOWN, NOLB and "no check" count as "other".
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
