package metrics

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hacheck/hacheck/spool/audit"
)

// Spool change actions and origins, the only values hacheck_spool_changes_total takes; every
// pair is exported from the start, so that rate() and increase() see a change from zero.
var (
	SpoolChangeActions = audit.Actions
	SpoolChangeOrigins = []string{audit.OriginHTTP, audit.OriginWatch}
)

func newSpoolChanges(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hacheck_spool_changes_total",
		Help: "Changes of the spool by action (down, drain, weight, up) and origin: http for POST /spool, watch for a file changed by another writer, the hadown/haup commands included.",
	}, []string{"action", "origin"})
	for _, a := range SpoolChangeActions {
		for _, o := range SpoolChangeOrigins {
			c.WithLabelValues(a, o)
		}
	}
	reg.MustRegister(c)
	return c
}

// SpoolChanged counts one spool change. Values outside SpoolChangeActions and
// SpoolChangeOrigins are not counted: the label set stays fixed.
func (m *Metrics) SpoolChanged(action, origin string) {
	if !slices.Contains(SpoolChangeActions, action) || !slices.Contains(SpoolChangeOrigins, origin) {
		return
	}
	m.spoolChanges.WithLabelValues(action, origin).Inc()
}
