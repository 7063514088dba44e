package metrics_test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/hacheck/hacheck/check"
	"github.com/hacheck/hacheck/metrics"
	"github.com/hacheck/hacheck/spool"
)

// BenchmarkPipeline runs check requests through the pipeline as the server does, once without
// instrumentation and once with it (observer plus the per-request observation), so the cost
// of metrics shows as the difference between the two.
func BenchmarkPipeline(b *testing.B) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer backend.Close()
	port := strconv.Itoa(backend.Listener.Addr().(*net.TCPAddr).Port)
	for _, tc := range []struct {
		name string
		req  check.Request
	}{
		{"spool", check.Request{Protocol: "spool", Service: "web", Port: "0", Header: http.Header{}}},
		{"cached-http", check.Request{Protocol: "http", Service: "web", Port: port, Query: "health", Host: "lb", Header: http.Header{}}},
	} {
		for _, instrumented := range []bool{false, true} {
			name := "path=" + tc.name + "/metrics=off"
			if instrumented {
				name = "path=" + tc.name + "/metrics=on"
			}
			b.Run(name, func(b *testing.B) {
				store := spool.New(b.TempDir())
				if err := store.Watch(); err != nil {
					b.Fatal(err)
				}
				defer store.Close()
				var m *metrics.Metrics
				var observer check.Observer
				if instrumented {
					m = metrics.New(store, "bench", metrics.Options{})
					observer = m
				}
				p := check.NewPipeline(store, check.Settings{
					CacheTTL: time.Hour, CheckTimeout: time.Second, HeadersToCopy: []string{"Host"},
					Checkers: check.NewRegistry(check.Options{}),
				}, observer)
				source := netip.MustParseAddr("10.1.2.3")
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						start := time.Now()
						a := p.Answer(tc.req)
						if m != nil {
							m.ObserveRequest(a.Protocol, a.Service, source, a.Code, a.Outcome, time.Since(start))
						} else {
							_ = time.Since(start)
						}
					}
				})
			})
		}
	}
}
