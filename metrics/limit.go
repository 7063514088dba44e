package metrics

import (
	"cmp"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// limiter admits at most max distinct keys, each with a value made once at admission. Admitted
// keys stay for the life of the process; refused keys leave no trace, so its memory is bounded
// by the largest cap it ever had. A lookup of an admitted key is one sync.Map read; a refusal
// once full is that read plus two atomic loads.
type limiter[K comparable, V any] struct {
	max  atomic.Int64
	size atomic.Int64 // written under mu only
	mu   sync.Mutex
	set  sync.Map // K -> V
}

func newLimiter[K comparable, V any]() *limiter[K, V] { return &limiter[K, V]{} }

func (l *limiter[K, V]) setMax(n int) { l.max.Store(int64(n)) }

// get returns the value admitted for key, admitting key with create(key) while fewer than max
// keys are admitted. ok is false when key is refused.
func (l *limiter[K, V]) get(key K, create func(K) V) (v V, ok bool) {
	if v, ok := l.set.Load(key); ok {
		return v.(V), true
	}
	if l.size.Load() >= l.max.Load() {
		return v, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if v, ok := l.set.Load(key); ok {
		return v.(V), true
	}
	if l.size.Load() >= l.max.Load() {
		return v, false
	}
	v = create(key)
	l.set.Store(key, v)
	l.size.Add(1)
	return v, true
}

// len is how many keys are admitted.
func (l *limiter[K, V]) len() int { return int(l.size.Load()) }

func serviceLabel(s string) string { return s }

// networkTable is the compiled source_networks: prefixes longest first, so the first match is
// the most specific. It is swapped whole on reload.
type networkTable struct {
	p atomic.Pointer[[]namedPrefix]
}

type namedPrefix struct {
	prefix netip.Prefix
	name   string
}

func (t *networkTable) set(networks map[string][]netip.Prefix) {
	var table []namedPrefix
	for name, prefixes := range networks {
		for _, p := range prefixes {
			if !p.IsValid() {
				continue
			}
			// An IPv4-mapped prefix (::ffff:10.0.0.0/104) matches like its IPv4 form, because
			// sources are unmapped before matching.
			if p.Addr().Is4In6() && p.Bits() >= 96 {
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			table = append(table, namedPrefix{prefix: p.Masked(), name: name})
		}
	}
	slices.SortFunc(table, func(a, b namedPrefix) int {
		if c := cmp.Compare(b.prefix.Bits(), a.prefix.Bits()); c != 0 {
			return c
		}
		return cmp.Compare(a.name, b.name)
	})
	t.p.Store(&table)
}

// lookup returns the name of the most specific network holding addr (already unmapped), or "".
func (t *networkTable) lookup(addr netip.Addr) string {
	table := t.p.Load()
	if table == nil {
		return ""
	}
	for _, np := range *table {
		if np.prefix.Contains(addr) {
			return np.name
		}
	}
	return ""
}

// ServiceLabel is the label value for service, as /metrics, /status/count and /recent use it:
// the service itself once admitted (while fewer than MaxServices distinct services are, it is
// admitted now), else "other"; "" gives "invalid". It does not count an overflow:
// ObserveRequest does, once per request it folds into "other".
func (m *Metrics) ServiceLabel(service string) string {
	if service == "" {
		return LabelInvalid
	}
	if s, ok := m.services.get(service, serviceLabel); ok {
		return s
	}
	return LabelOther
}

// SourceLabel is the label value for a request's source address: the name of the
// SourceNetworks entry holding it (which uses no slot), else the address's text (IPv4-mapped
// IPv6 unmapped, zone dropped) while fewer than MaxSources distinct addresses are admitted, else
// "other"; an invalid address gives "unknown". Like ServiceLabel, it does not count an overflow.
func (m *Metrics) SourceLabel(addr netip.Addr) string {
	label, _, _ := m.sourceSeries(addr)
	return label
}

// sourceCounter is the hacheck_requests_by_source_total child for addr, counting an overflow
// when addr is folded into "other".
func (m *Metrics) sourceCounter(addr netip.Addr) (string, prometheus.Counter) {
	label, counter, overflow := m.sourceSeries(addr)
	if overflow {
		m.overflowSource.Inc()
	}
	if counter == nil {
		counter = lookup(&m.networkHandles, m, label, (*Metrics).newSourceCounter)
	}
	return label, counter
}

// sourceSeries resolves addr to its label and, for an admitted address, its counter (nil for
// network names, "other" and "unknown"). overflow says the address was refused a slot.
func (m *Metrics) sourceSeries(addr netip.Addr) (label string, counter prometheus.Counter, overflow bool) {
	if !addr.IsValid() {
		return LabelUnknown, nil, false
	}
	addr = addr.Unmap().WithZone("")
	if name := m.networks.lookup(addr); name != "" {
		return name, nil, false
	}
	s, ok := m.sources.get(addr, m.newSourceSeries)
	if !ok {
		return LabelOther, nil, true
	}
	return s.label, s.counter, false
}

func (m *Metrics) newSourceSeries(addr netip.Addr) *sourceSeries {
	label := addr.String()
	return &sourceSeries{label: label, counter: m.requestsSource.WithLabelValues(label)}
}
