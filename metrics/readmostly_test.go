package metrics

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hacheck/hacheck/check"
)

// Every key stored is found again, from any goroutine, however publishing interleaves.
func TestReadMostlyConcurrent(t *testing.T) {
	var r readMostly[string, int]
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				key := strconv.Itoa(i)
				v, ok := r.loadOrStore(key, func() (int, bool) { return i, true })
				if !ok || v != i {
					t.Errorf("goroutine %d: loadOrStore(%s) = %d, %v", g, key, v, ok)
					return
				}
				if v, ok := r.loadOrStore(key, func() (int, bool) { return -1, true }); !ok || v != i {
					t.Errorf("goroutine %d: second loadOrStore(%s) = %d, %v", g, key, v, ok)
					return
				}
			}
		}()
	}
	wg.Wait()
	n := 0
	r.rangeAll(func(string, int) { n++ })
	if n != 2000 {
		t.Fatalf("%d keys, want 2000", n)
	}
}

// A full limiter answers refusals from the published map alone, and still finds every key it
// admitted, also those admitted just before it filled up.
func TestLimiterFullIsPublished(t *testing.T) {
	l := newLimiter[string, string]()
	l.setMax(3)
	for _, k := range []string{"a", "b", "c"} {
		if _, ok := l.get(k, sameLabel); !ok {
			t.Fatalf("%s refused below the cap", k)
		}
	}
	if _, ok := l.get("d", sameLabel); ok {
		t.Fatal("d admitted past the cap")
	}
	if l.set.dirty.Load() {
		t.Fatal("a refusal must publish every admitted key")
	}
	for _, k := range []string{"a", "b", "c"} {
		if _, ok := l.set.loadPublished(k); !ok {
			t.Fatalf("%s admitted but not published once full", k)
		}
	}
	l.setMax(4) // a reload raising the cap admits again
	if _, ok := l.get("d", sameLabel); !ok {
		t.Fatal("d refused after the cap was raised")
	}
}

// Concurrent first requests for the key that takes the last slot are all admitted: none is
// refused (which would count a false overflow).
func TestLimiterLastSlotSameKey(t *testing.T) {
	for round := range 2000 {
		l := newLimiter[string, string]()
		l.setMax(1)
		var wg sync.WaitGroup
		refused := make(chan struct{}, 4)
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, ok := l.get("web", sameLabel); !ok {
					refused <- struct{}{}
				}
			}()
		}
		wg.Wait()
		if len(refused) > 0 {
			t.Fatalf("round %d: %d of 4 concurrent requests for the last slot's key refused", round, len(refused))
		}
	}
}

// A real service called "other" shares the overflow slot: one line in /recent, one count.
func TestServiceNamedOther(t *testing.T) {
	m := New(nil, "test", Options{MaxServices: 1})
	src := netip.MustParseAddr("10.0.0.1")
	now := time.Now()
	for _, svc := range []string{"other", "web", "other", "api"} {
		l := m.ObserveRequest("http", svc, src, 200, check.OutcomeOK, time.Millisecond)
		m.Seen(l, 200, src, now)
	}
	var names []string
	for _, r := range m.Recent(now.Add(-time.Minute)) {
		names = append(names, r.Service)
	}
	if got := strings.Join(names, " "); got != "other web" {
		t.Fatalf("/recent services: %q", got)
	}
	if n := m.SourceCounts()["other"]["10.0.0.1"]; n != 3 {
		t.Fatalf("other counted %d, want 3 (two real, one folded)", n)
	}
}

// /status/count keeps maxSourcePairs (service, source) pairs: a fleet bigger than that loses no
// request, and every pair past the cap counts under its service's source "other", also
// on later requests, when the fast path finds "other" without the lock.
func TestSourcePairsCapped(t *testing.T) {
	const sources = 50
	services := maxSourcePairs/sources + 20 // 1,000 pairs too many
	m := New(nil, "test", Options{MaxServices: services, MaxSources: sources})
	now := time.Now()
	requests := 0
	for round := range 2 {
		for s := range services {
			for i := range sources {
				src := netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})
				m.Seen(m.ObserveRequest("http", fmt.Sprintf("svc%d", s), src, 200, check.OutcomeOK, 0), 200, src, now)
				requests++
			}
		}
		counts := m.SourceCounts()
		pairs, total, other := 0, int64(0), int64(0)
		for _, bySource := range counts {
			for source, n := range bySource {
				total += n
				if source == LabelOther {
					other += n
				} else {
					pairs++
				}
			}
		}
		if pairs != maxSourcePairs || total != int64(requests) || other != int64((round+1)*1000) {
			t.Fatalf("round %d: %d pairs kept (want %d), %d requests counted (want %d), %d under other (want %d)",
				round, pairs, maxSourcePairs, total, requests, other, (round+1)*1000)
		}
	}
}

// Requests recorded out of order at a second's boundary: /recent keeps the later second and
// that request's answer. A wall clock set back further is followed.
func TestRecentNeverStepsBack(t *testing.T) {
	src, other := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	now := time.Unix(1_800_000_000, 0)
	tests := []struct {
		name     string
		late     time.Time
		wantTime time.Time
		wantCode int
		wantIP   string
	}{
		{"recorded after the next second's", now.Add(-time.Second), now, 200, "10.0.0.1"},
		{"clock set back", now.Add(-time.Hour), now.Add(-time.Hour), 503, "10.0.0.2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := New(nil, "test", Options{})
			l := m.ObserveRequest("http", "web", src, 200, check.OutcomeOK, time.Millisecond)
			m.Seen(l, 200, src, now)
			m.Seen(l, 503, other, tc.late)
			recent := m.Recent(now.Add(-2 * time.Hour))
			if len(recent) != 1 || !recent[0].Time.Equal(tc.wantTime) || recent[0].Code != tc.wantCode || recent[0].RemoteIP != tc.wantIP {
				t.Fatalf("/recent = %+v, want web at %v, %d from %s", recent, tc.wantTime, tc.wantCode, tc.wantIP)
			}
		})
	}
}
