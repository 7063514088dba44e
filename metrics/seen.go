package metrics

import (
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// seen is what /recent and /status/count report of one service: the last check's code, source
// and second, and how often each source asked. It lives in the service's slot, next to its
// series, so a request finds all of it with the one lookup that bounds its label. Every core
// writes it on every request, so it is lock-free and writes only what changed: the second at
// most once a second, the code and source when they differ, a per-source count always.
type seen struct {
	seconds atomic.Int64 // unix seconds of the last check; 0: never
	last    atomic.Pointer[lastCheck]
	sources readMostly[string, *atomic.Int64]
}

// lastCheck is swapped whole, so /recent never pairs one request's code with another's source.
type lastCheck struct {
	code     int
	remoteIP netip.Addr
}

// maxSourcePairs bounds /status/count as a whole: each cap alone allows MaxServices ×
// MaxSources (service, source) pairs, the product the metrics avoid on purpose. Past it, new
// pairs count under source "other". It is a soft cap: near it, two requests racing for one new
// pair may briefly push a third pair's request under "other". 100,000 pairs hold a fleet of
// 2,000 services each checked by 50 load balancers, in ~11 MiB of heap (measured with the
// services' series included).
const maxSourcePairs = 100_000

// Seen records, for /recent and /status/count, that the service counted under l answered code
// to source at at. l comes from ObserveRequest; a zero RequestLabels with only Service set
// (uninstrumented benchmarks) works too, with one more lookup.
func (m *Metrics) Seen(l RequestLabels, code int, source netip.Addr, at time.Time) {
	svc := l.slot
	if svc == nil {
		svc = m.serviceSlot(l.Service)
	}
	st := &svc.seen
	sec := at.Unix()
	newSecond := st.seconds.Load() != sec
	if newSecond {
		st.seconds.Store(sec)
	}
	// A changed code is stored at once; a changed source at most once a second, since a
	// service checked from many sources would otherwise allocate on every request.
	if last := st.last.Load(); last == nil || last.code != code || newSecond && last.remoteIP != source {
		st.last.Store(&lastCheck{code: code, remoteIP: source})
	}
	sourceLabel := l.Source
	if sourceLabel == "" {
		sourceLabel = m.SourceLabel(source)
	}
	count, ok := st.sources.loadPublished(sourceLabel)
	if !ok {
		count = m.newSourceCount(st, sourceLabel)
	}
	count.Add(1)
}

// newSourceCount finds or makes the counter of a (service, source) pair not seen before, under
// source "other" once maxSourcePairs pairs exist. The shared pair count is read before it is
// added to: once full, every request of an uncounted pair comes here, and a read from both
// cores costs nothing where an add would bounce the cache line.
func (m *Metrics) newSourceCount(st *seen, source string) *atomic.Int64 {
	// Once every pair is taken, a pair missing from a service's published map while nothing
	// waits to be published is not counted: its requests go to "other", found without the
	// lock. (A fleet bigger than the cap sends most requests here; the locked path would
	// also republish the service's map every few requests.)
	if m.sourcePairs.Load() >= maxSourcePairs && !st.sources.dirty.Load() {
		if count, ok := st.sources.loadPublished(LabelOther); ok {
			return count
		}
	}
	if count, ok := st.sources.load(source); ok {
		return count
	}
	counted := false
	if m.sourcePairs.Load() < maxSourcePairs {
		if m.sourcePairs.Add(1) <= maxSourcePairs {
			counted = true
		} else {
			m.sourcePairs.Add(-1)
		}
	}
	if !counted {
		source = LabelOther
	}
	stored := false
	count, _ := st.sources.loadOrStore(source, func() (*atomic.Int64, bool) {
		stored = true
		return new(atomic.Int64), true
	})
	if counted && !stored {
		m.sourcePairs.Add(-1) // another request stored this pair first
	}
	return count
}

// serviceSlot is the slot of a bounded service label.
func (m *Metrics) serviceSlot(label string) *serviceSeries {
	switch label {
	case LabelOther:
		return &m.otherService
	case LabelInvalid, "":
		return &m.invalidService
	}
	if svc, ok := m.services.get(label, newServiceSeries); ok {
		return svc
	}
	return &m.otherService
}

// RecentService is one line of /recent.
type RecentService struct {
	Service  string
	Code     int
	RemoteIP string
	Time     time.Time
}

// Recent lists the services checked at or after since, sorted by name.
func (m *Metrics) Recent(since time.Time) []RecentService {
	var out []RecentService
	m.eachService(func(svc *serviceSeries) {
		sec := svc.seen.seconds.Load()
		if sec == 0 || time.Unix(sec, 0).Before(since) {
			return
		}
		entry := RecentService{Service: svc.label, Time: time.Unix(sec, 0)}
		if last := svc.seen.last.Load(); last != nil {
			entry.Code, entry.RemoteIP = last.code, last.remoteIP.String()
		}
		out = append(out, entry)
	})
	slices.SortFunc(out, func(a, b RecentService) int { return strings.Compare(a.Service, b.Service) })
	return out
}

// SourceCounts is /status/count's service → source → requests.
func (m *Metrics) SourceCounts() map[string]map[string]int64 {
	out := map[string]map[string]int64{}
	m.eachService(func(svc *serviceSeries) {
		counts := map[string]int64{}
		svc.seen.sources.rangeAll(func(source string, n *atomic.Int64) { counts[source] = n.Load() })
		if len(counts) > 0 {
			out[svc.label] = counts
		}
	})
	return out
}

func (m *Metrics) eachService(f func(*serviceSeries)) {
	m.services.set.rangeAll(func(_ string, svc *serviceSeries) { f(svc) })
	f(&m.otherService)
	f(&m.invalidService)
}
