package lb

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports a Tracker at every scrape: hacheck_lb_server_state counts the established
// server lines seen within the window per service and state (one series per state a line is in, never one
// per load balancer), and hacheck_lb_dropped_total the headers and agent replies not kept.
type Collector struct {
	tracker *Tracker
	now     func() time.Time
	state   *prometheus.Desc
	dropped *prometheus.Desc
}

// NewCollector returns the collector for t.
func NewCollector(t *Tracker) *Collector {
	return &Collector{
		tracker: t,
		now:     time.Now,
		state: prometheus.NewDesc("hacheck_lb_server_state",
			"Load balancer server lines (HAProxy instance and backend/server) that check the service repeatedly and whose last check within lb_window reported the state, from X-Haproxy-Server-State; states other than UP, DOWN, NOLB and \"no check\" count as \"other\".",
			[]string{"service", "state"}, nil),
		dropped: prometheus.NewDesc("hacheck_lb_dropped_total",
			"Send-state headers and agent replies not kept, or pushed out, because the load balancer tracker's memory budget for reporters not yet established was taken.",
			nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.state
	ch <- c.dropped
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for service, byState := range c.tracker.StateCounts(c.now()) {
		for state, n := range byState {
			ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, float64(n), service, state)
		}
	}
	ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(c.tracker.Dropped()))
}
