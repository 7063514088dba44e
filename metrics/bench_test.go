package metrics

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/hacheck/hacheck/check"
)

// BenchmarkObserveRequest is the per-request cost on the hot path: a handful of services and
// sources, all admitted, observed from every core at once.
func BenchmarkObserveRequest(b *testing.B) {
	m, _ := newTestMetrics(b, Options{})
	services := []string{"web", "api", "db", "cache", "search", "queue", "auth", "mail"}
	sources := []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("::ffff:10.0.0.3")}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			m.ObserveRequest("http", services[i%len(services)], sources[i%len(sources)], 200, check.OutcomeOK, 3*time.Millisecond)
			i++
		}
	})
}

// BenchmarkObserveRequestOverflow is the same once every service and source is over its cap,
// as under a scan inventing service names.
func BenchmarkObserveRequestOverflow(b *testing.B) {
	m, _ := newTestMetrics(b, Options{MaxServices: 1, MaxSources: 1})
	m.ObserveRequest("http", "first", netip.MustParseAddr("10.0.0.1"), 200, check.OutcomeOK, 0)
	names := make([]string, 1024)
	for i := range names {
		names[i] = fmt.Sprintf("scan-%d", i)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			m.ObserveRequest("http", names[i%len(names)], netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), 404, check.OutcomeError, time.Millisecond)
			i++
		}
	})
}

// BenchmarkObserver is the pipeline's per-check cost: CheckStarted, CheckFinished, CacheServed.
func BenchmarkObserver(b *testing.B) {
	m, _ := newTestMetrics(b, Options{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.CheckStarted("http")
			m.CheckFinished("http", check.OutcomeOK, 2*time.Millisecond)
			m.CacheServed("http", check.CacheMiss)
		}
	})
}

func BenchmarkLimiter(b *testing.B) {
	for _, bc := range []struct {
		name     string
		max      int
		distinct int
	}{
		{"admitted", 2000, 2000},
		{"refused", 1000, 4000}, // three in four are refused
	} {
		b.Run("service/"+bc.name, func(b *testing.B) {
			m, _ := newTestMetrics(b, Options{MaxServices: bc.max})
			names := make([]string, bc.distinct)
			for i := range names {
				names[i] = fmt.Sprintf("service-%d", i)
				m.ServiceLabel(names[i])
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					_ = m.ServiceLabel(names[i%len(names)])
					i++
				}
			})
		})
		b.Run("source/"+bc.name, func(b *testing.B) {
			m, _ := newTestMetrics(b, Options{MaxSources: bc.max})
			addrs := make([]netip.Addr, bc.distinct)
			for i := range addrs {
				addrs[i] = netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
				m.SourceLabel(addrs[i])
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					_ = m.SourceLabel(addrs[i%len(addrs)])
					i++
				}
			})
		})
	}
}

// BenchmarkSeenFleet is ObserveRequest and Seen for the load harness's fleet: 1,000 services
// each checked from 50 sources, 50,000 (service, source) pairs, more than /status/count keeps,
// so most requests count under source "other" there.
func BenchmarkSeenFleet(b *testing.B) {
	m, _ := newTestMetrics(b, Options{})
	services := make([]string, 1000)
	for i := range services {
		services[i] = fmt.Sprintf("svc%d", i)
	}
	sources := make([]netip.Addr, 50)
	for i := range sources {
		sources[i] = netip.AddrFrom4([4]byte{127, 0, 0, byte(10 + i)})
	}
	now := time.Now()
	for _, svc := range services { // every pair seen once: the steady state
		for _, src := range sources {
			m.Seen(m.ObserveRequest("http", svc, src, 200, check.OutcomeOK, time.Millisecond), 200, src, now)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			src := sources[i%len(sources)]
			l := m.ObserveRequest("http", services[(i*7)%len(services)], src, 200, check.OutcomeOK, time.Millisecond)
			m.Seen(l, 200, src, now)
			i++
		}
	})
}
