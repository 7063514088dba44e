package metrics

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hacheck/hacheck/spool"
)

// maxReasonLen bounds the reason label of hacheck_spool_mark_info, in bytes.
const maxReasonLen = 100

// spoolCollector exports the spool's current marks. It reads the spool on every scrape and
// keeps nothing between scrapes, so a mark written by hadown appears at the next scrape and one
// removed by haup disappears from it.
//
// When the spool cannot be listed at all, the scrape carries no mark series and
// hacheck_spool_read_errors_total goes up by one; the rest of /metrics is unaffected.
type spoolCollector struct {
	store      *spool.Store
	creation   *prometheus.Desc
	expiration *prometheus.Desc
	info       *prometheus.Desc
	unreadable *prometheus.Desc
	readErrors prometheus.Counter
}

func newSpoolCollector(store *spool.Store) *spoolCollector {
	labels := []string{"service", "port"}
	return &spoolCollector{
		store: store,
		creation: prometheus.NewDesc("hacheck_spool_mark_creation_timestamp_seconds",
			"Unix time each current spool mark was created (down since). port 0 is the whole service; service \"all\" is the host-wide mark.",
			labels, nil),
		expiration: prometheus.NewDesc("hacheck_spool_mark_expiration_timestamp_seconds",
			"Unix time each current spool mark expires; absent for marks without an expiration.",
			labels, nil),
		info: prometheus.NewDesc("hacheck_spool_mark_info",
			"Always 1, one series per current spool mark; reason is the mark's reason, cut to 100 bytes; kind is down, drain or weight (a weight-only mark, which holds nothing down).",
			append(labels, "reason", "kind"), nil),
		unreadable: prometheus.NewDesc("hacheck_spool_marks_unreadable",
			"Spool marks that exist but cannot be read or parsed; each counts as down.",
			nil, nil),
		readErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hacheck_spool_read_errors_total",
			Help: "Scrapes at which the spool directory could not be listed, so no mark series were exported.",
		}),
	}
}

// Describe implements prometheus.Collector.
func (c *spoolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.creation
	ch <- c.expiration
	ch <- c.info
	ch <- c.unreadable
	c.readErrors.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c *spoolCollector) Collect(ch chan<- prometheus.Metric) {
	marks, err := c.store.List()
	if err != nil {
		c.readErrors.Inc()
		c.readErrors.Collect(ch)
		return
	}
	c.readErrors.Collect(ch)
	unreadable := 0
	for _, m := range marks {
		if m.Err != nil {
			unreadable++
		}
		// List only returns valid names (ASCII), so these never fail; the reason is made valid
		// UTF-8 anyway, because a panic here would run in a Gather goroutine and kill the server.
		service, port := m.Service, strconv.Itoa(m.Port)
		if !m.Creation.IsZero() {
			send(ch, c.creation, unixSeconds(m.Creation), service, port)
		}
		if !m.Expiration.IsZero() {
			send(ch, c.expiration, unixSeconds(m.Expiration), service, port)
		}
		send(ch, c.info, 1, service, port, truncateReason(m.Reason), string(m.Kind()))
	}
	send(ch, c.unreadable, float64(unreadable))
}

// send emits a gauge, or an invalid metric (a scrape error) instead of panicking.
func send(ch chan<- prometheus.Metric, desc *prometheus.Desc, value float64, labels ...string) {
	m, err := prometheus.NewConstMetric(desc, prometheus.GaugeValue, value, labels...)
	if err != nil {
		m = prometheus.NewInvalidMetric(desc, err)
	}
	ch <- m
}

// truncateReason makes a reason a valid label value of at most maxReasonLen bytes, cut on a
// rune boundary.
func truncateReason(reason string) string {
	reason = strings.ToValidUTF8(reason, "\uFFFD")
	if len(reason) <= maxReasonLen {
		return reason
	}
	cut := maxReasonLen
	for cut > 0 && !utf8.RuneStart(reason[cut]) {
		cut--
	}
	return reason[:cut]
}
