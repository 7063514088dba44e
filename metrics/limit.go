package metrics

import (
	"cmp"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hacheck/hacheck/internal/published"
)

// limiter admits at most max distinct keys, each with a value made once at admission. Admitted
// keys stay for the life of the process; refused keys leave no trace, so its memory is bounded
// by the largest cap it ever had. A lookup of an admitted key is one plain map read (see
// readMostly); a refusal once full is that read plus two atomic loads.
type limiter[K comparable, V any] struct {
	max  atomic.Int64
	size atomic.Int64 // written under set's lock only
	set  readMostly[K, V]
}

func newLimiter[K comparable, V any]() *limiter[K, V] { return &limiter[K, V]{} }

func (l *limiter[K, V]) setMax(n int) { l.max.Store(int64(n)) }

// get returns the value admitted for key, admitting key with create(key) while fewer than max
// keys are admitted. ok is false when key is refused.
func (l *limiter[K, V]) get(key K, create func(K) V) (v V, ok bool) {
	if v, ok := l.set.loadPublished(key); ok {
		return v, true
	}
	// Full and every admitted key published: a refusal needs no lock, which matters because
	// refusals are what clients inventing names cause, on every request.
	// Two orderings make this safe: admission marks the map dirty before it takes the slot, so
	// a reader that sees the slot taken sees dirty and goes to the lock; and publishing stores
	// the new map before clearing dirty, so a reader that sees dirty clear finds every
	// admitted key on a second look at the published map.
	if l.size.Load() >= l.max.Load() && !l.set.dirty.Load() {
		if v, ok := l.set.loadPublished(key); ok {
			return v, true
		}
		return v, false
	}
	return l.set.loadOrStore(key, func() (V, bool) {
		if l.size.Load() >= l.max.Load() {
			return v, false
		}
		l.set.dirty.Store(true)
		l.size.Add(1)
		return create(key), true
	})
}

// readMostly is a map for keys that are added rarely and read on every request from every
// core: reads look in its published copy (package published), without a lock; new keys go to
// the locked map first.
type readMostly[K comparable, V any] struct {
	read  published.Map[K, V]
	dirty atomic.Bool // all holds keys read does not; written under mu
	mu    sync.Mutex
	all   map[K]V // every key; guarded by mu
}

// loadPublished looks in the published map only: no lock, but a key stored recently may not
// be there yet (dirty says whether any is missing).
func (r *readMostly[K, V]) loadPublished(key K) (V, bool) {
	v, ok := r.read.Load()[key]
	return v, ok
}

// loadOrStore returns the value for key, storing the one make returns (when its ok is true)
// if there is none. make runs under the map's lock, at most once per call.
func (r *readMostly[K, V]) loadOrStore(key K, make func() (V, bool)) (V, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if v, ok := r.all[key]; ok {
		r.notePublishedMissLocked()
		return v, true
	}
	v, ok := make()
	if !ok {
		if r.dirty.Load() {
			r.publishLocked() // refusals from now on can be answered without the lock
		}
		return v, false
	}
	if r.all == nil {
		r.all = map[K]V{}
	}
	r.all[key] = v
	r.dirty.Store(true)
	r.notePublishedMissLocked()
	return v, true
}

func (r *readMostly[K, V]) notePublishedMissLocked() {
	if r.read.Missed(r.all) {
		r.dirty.Store(false) // after the publish: see limiter.get
	}
}

// publishLocked publishes every key; the published map is stored before dirty is cleared (see
// limiter.get).
func (r *readMostly[K, V]) publishLocked() {
	r.read.Publish(r.all)
	r.dirty.Store(false)
}

// rangeAll calls f for every key, in no order, on a consistent copy.
func (r *readMostly[K, V]) rangeAll(f func(K, V)) {
	r.mu.Lock()
	snapshot := maps.Clone(r.all)
	r.mu.Unlock()
	for k, v := range snapshot {
		f(k, v)
	}
}

// len is how many keys are admitted.
func (l *limiter[K, V]) len() int { return int(l.size.Load()) }

// sameLabel is the value of a label that is its own key (protocols).
func sameLabel(s string) string { return s }

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
	svc, _ := m.serviceOf(service, nil)
	return svc.label
}

// SourceLabel is the label value for a request's source address: the name of the
// SourceNetworks entry holding it (which uses no slot), else the address's text (IPv4-mapped
// IPv6 unmapped, zone dropped) while fewer than MaxSources distinct addresses are admitted, else
// "other"; an invalid address gives "unknown". Like ServiceLabel, it does not count an overflow.
func (m *Metrics) SourceLabel(addr netip.Addr) string {
	return m.sourceSeries(addr).label
}

// sourceCounter is the hacheck_requests_by_source_total child for addr, with its label and
// the label's id in /status/count's table, counting an overflow when addr is folded into
// "other".
func (m *Metrics) sourceCounter(addr netip.Addr) (string, uint32, prometheus.Counter) {
	s := m.sourceSeries(addr)
	if s.overflow {
		m.overflowSource.Inc()
	}
	if s.counter == nil {
		s = lookup(&m.labelSeries, m, s.label, (*Metrics).newLabelSeries)
	}
	return s.label, s.id, s.counter
}

// sourceSeries resolves addr: an admitted address's series, or for a network name, "other"
// (overflow: the address was refused a slot) and "unknown" the label alone.
func (m *Metrics) sourceSeries(addr netip.Addr) sourceSeries {
	if !addr.IsValid() {
		return sourceSeries{label: LabelUnknown}
	}
	addr = addr.Unmap().WithZone("")
	if name := m.networks.lookup(addr); name != "" {
		return sourceSeries{label: name}
	}
	s, ok := m.sources.get(addr, m.newSourceSeries)
	if !ok {
		return sourceSeries{label: LabelOther, overflow: true}
	}
	return *s
}

func (m *Metrics) newSourceSeries(addr netip.Addr) *sourceSeries {
	label := addr.String()
	return &sourceSeries{label: label, id: m.pairs.sourceIDOf(label), counter: m.requestsSource.WithLabelValues(label)}
}
