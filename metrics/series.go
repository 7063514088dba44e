package metrics

import (
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// serviceSeries is what the service limiter keeps per admitted service (and what "other" and
// "invalid" have): its label, its id in /status/count's table, its /recent slot and its
// hacheck_requests_total cells, the one it counted last first.
type serviceSeries struct {
	label string
	id    uint32 // in /status/count's table
	last  atomic.Pointer[requestCell]
	seen  seen
	// first is the cell of the service's first (protocol, code, result), inside the series
	// so that for the many services whose checks always end the same way, counting a request
	// needs no other cache line. Written once, under requestCells' lock, before it is
	// published; firstTaken is guarded by that lock.
	firstTaken bool
	first      requestCell
}

// newCell makes the cell of key, one of svc's series; it runs under requestCells' lock.
func (svc *serviceSeries) newCell(key requestKey) *requestCell {
	cell := &requestCell{}
	if !svc.firstTaken {
		svc.firstTaken = true
		cell = &svc.first
	}
	cell.key, cell.created = key, time.Now()
	return cell
}

// requestCell is one series of hacheck_requests_total. The counts are hacheck's own rather
// than client_golang counters so that a service's usual cell can live inside its series: a
// client_golang counter is an allocation of its own, one more cache line to fetch on every
// request, and under the fleet load that was a measurable share of a request's cost.
type requestCell struct {
	n       atomic.Uint64
	key     requestKey
	created time.Time
}

// requestCounters exports the request cells as hacheck_requests_total.
type requestCounters struct {
	cells *readMostly[requestKey, *requestCell]
	desc  *prometheus.Desc
}

// Describe implements prometheus.Collector.
func (c requestCounters) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector. A series that cannot be exported (a label value
// that is not UTF-8; the callers validate) is reported as an error of that series and the
// others are served: a panic here would cost the scrape every series this collector had not
// sent yet (client_golang recovers it for the whole collector).
func (c requestCounters) Collect(ch chan<- prometheus.Metric) {
	c.cells.rangeAll(func(k requestKey, cell *requestCell) {
		metric, err := prometheus.NewConstMetricWithCreatedTimestamp(c.desc, prometheus.CounterValue, float64(cell.n.Load()),
			cell.created, k.protocol, k.service, strconv.Itoa(k.code), string(k.outcome))
		if err != nil {
			metric = prometheus.NewInvalidMetric(c.desc, fmt.Errorf("hacheck_requests_total for service %q: %w", k.service, err))
		}
		ch <- metric
	})
}

// makeServiceSeries is the service limiter's constructor (under its lock, so ids are handed
// out one at a time).
func (m *Metrics) makeServiceSeries(service string) *serviceSeries {
	svc := &serviceSeries{label: service}
	m.pairs.registerService(svc)
	return svc
}
