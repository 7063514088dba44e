package metrics

import (
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// seen is what /recent reports of one service: the last check's code, source and second (how
// often each source asked, for /status/count, is in pairs.go). It lives in the service's slot,
// next to its series, so a request finds it with the one lookup that bounds its label. Every
// core writes it on every request, so it is lock-free and writes only what changed: the second
// at most once a second, the code and source when they differ.
type seen struct {
	seconds atomic.Int64 // unix seconds of the last check; 0: never
	last    atomic.Pointer[lastCheck]
}

// lastCheck is swapped whole, so /recent never pairs one request's code with another's source.
type lastCheck struct {
	code     int
	remoteIP netip.Addr
}

// Seen records, for /recent and /status/count, that the service counted under l answered code
// to remote at at. l comes from ObserveRequest; a RequestLabels with only Service set works
// too, with one more lookup.
func (m *Metrics) Seen(l RequestLabels, code int, remote netip.Addr, at time.Time) {
	svc := l.slot
	if svc == nil {
		svc, _ = m.serviceOf(l.Service, nil)
	}
	st := &svc.seen
	newSecond, late := st.advanceTo(at.Unix())
	// A changed code is stored at once; a changed source at most once a second, since a
	// service checked from many sources would otherwise allocate on every request. A request
	// that finished after a later one was recorded is not the last check.
	if last := st.last.Load(); !late && (last == nil || last.code != code || newSecond && last.remoteIP != remote) {
		st.last.Store(&lastCheck{code: code, remoteIP: remote})
	}
	source := l.sourceID
	if l.Source == "" {
		source = m.pairs.sourceIDOf(m.SourceLabel(remote))
	}
	m.pairs.add(svc.id, source)
}

// advanceTo records sec as the last check's second and says whether that moved it (newSecond)
// or whether sec is the second before the one recorded (late): two requests finishing at a
// second's boundary on two CPUs can be recorded in the opposite order, and /recent must
// not step back. A step back of more than a second is the wall clock being set back, and is
// followed, or /recent would stand still until the clock caught up.
func (st *seen) advanceTo(sec int64) (newSecond, late bool) {
	for {
		cur := st.seconds.Load()
		if sec == cur {
			return false, false
		}
		if sec == cur-1 {
			return false, true
		}
		if st.seconds.CompareAndSwap(cur, sec) {
			return true, false
		}
	}
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
	m.pairs.each(func(svc *serviceSeries, source string, n int64) {
		if n == 0 {
			return // the (other, other) pair before anything overflowed
		}
		counts := out[svc.label]
		if counts == nil {
			counts = map[string]int64{}
			out[svc.label] = counts
		}
		counts[source] += n
	})
	return out
}

func (m *Metrics) eachService(f func(*serviceSeries)) {
	m.services.set.rangeAll(func(_ string, svc *serviceSeries) { f(svc) })
	f(&m.otherService)
	f(&m.invalidService)
}
