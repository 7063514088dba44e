package metrics

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/hacheck/hacheck/check"
	"github.com/hacheck/hacheck/spool"
)

// testNow is the fake clock of every spool in these tests: 2025-01-02T03:04:05Z.
var testNow = time.Unix(1735787045, 0)

func newTestMetrics(t testing.TB, opts Options) (*Metrics, *spool.Store) {
	t.Helper()
	store := spool.New(t.TempDir(), spool.WithClock(func() time.Time { return testNow }))
	return New(store, "1.2.3", opts), store
}

func compare(t *testing.T, m *Metrics, expected string, names ...string) {
	t.Helper()
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(expected), names...); err != nil {
		t.Error(err)
	}
}

type request struct {
	protocol, service string
	source            string
	code              int
	outcome           check.Outcome
	elapsed           time.Duration
}

func (r request) observe(m *Metrics) {
	var addr netip.Addr
	if r.source != "" {
		addr = netip.MustParseAddr(r.source)
	}
	m.ObserveRequest(r.protocol, r.service, addr, r.code, r.outcome, r.elapsed)
}

func TestRequestCounters(t *testing.T) {
	m, _ := newTestMetrics(t, Options{SourceNetworks: map[string][]netip.Prefix{
		"lb-east": {netip.MustParsePrefix("10.1.0.0/16")},
	}})
	for _, r := range []request{
		{"http", "web", "192.0.2.1", 200, check.OutcomeOK, 250 * time.Millisecond},
		{"http", "web", "::ffff:192.0.2.1", 200, check.OutcomeOK, 500 * time.Millisecond},
		{"http", "web", "10.1.2.3", 503, check.OutcomeSpoolDown, 250 * time.Microsecond},
		{"tcp", "db", "10.1.200.4", 503, check.OutcomeRefused, time.Millisecond},
		{"tcp", "db", "2001:db8::1", 503, check.OutcomeTimeout, 10 * time.Second},
		{"", "", "192.0.2.1", 404, check.OutcomeError, 0},
		{"http", "", "192.0.2.1", 400, check.OutcomeError, 0},
		{"http", "web", "", 200, "", 0}, // no source, no outcome
	} {
		r.observe(m)
	}
	compare(t, m, requestsTotalHeader+`hacheck_requests_total{code="200",protocol="http",result="ok",service="web"} 2
hacheck_requests_total{code="200",protocol="http",result="error",service="web"} 1
hacheck_requests_total{code="400",protocol="http",result="error",service="invalid"} 1
hacheck_requests_total{code="404",protocol="unknown",result="error",service="invalid"} 1
hacheck_requests_total{code="503",protocol="http",result="spool_down",service="web"} 1
hacheck_requests_total{code="503",protocol="tcp",result="refused",service="db"} 1
hacheck_requests_total{code="503",protocol="tcp",result="timeout",service="db"} 1
# HELP hacheck_requests_by_source_total Check requests answered, by source address or source_networks name.
# TYPE hacheck_requests_by_source_total counter
hacheck_requests_by_source_total{source="192.0.2.1"} 4
hacheck_requests_by_source_total{source="2001:db8::1"} 1
hacheck_requests_by_source_total{source="lb-east"} 2
hacheck_requests_by_source_total{source="unknown"} 1
# HELP hacheck_label_overflow_total Requests whose service or source was counted as "other" because max_services or max_source_ips distinct values already have their own series.
# TYPE hacheck_label_overflow_total counter
hacheck_label_overflow_total{label="service"} 0
hacheck_label_overflow_total{label="source"} 0
# HELP hacheck_request_duration_seconds Time to answer a check request, spool gate and cache included.
# TYPE hacheck_request_duration_seconds histogram
hacheck_request_duration_seconds_bucket{protocol="http",le="0.0001"} 2
hacheck_request_duration_seconds_bucket{protocol="http",le="0.00025"} 3
hacheck_request_duration_seconds_bucket{protocol="http",le="0.0005"} 3
hacheck_request_duration_seconds_bucket{protocol="http",le="0.001"} 3
hacheck_request_duration_seconds_bucket{protocol="http",le="0.0025"} 3
hacheck_request_duration_seconds_bucket{protocol="http",le="0.005"} 3
hacheck_request_duration_seconds_bucket{protocol="http",le="0.01"} 3
hacheck_request_duration_seconds_bucket{protocol="http",le="0.025"} 3
hacheck_request_duration_seconds_bucket{protocol="http",le="0.05"} 3
hacheck_request_duration_seconds_bucket{protocol="http",le="0.1"} 3
hacheck_request_duration_seconds_bucket{protocol="http",le="0.25"} 4
hacheck_request_duration_seconds_bucket{protocol="http",le="0.5"} 5
hacheck_request_duration_seconds_bucket{protocol="http",le="1"} 5
hacheck_request_duration_seconds_bucket{protocol="http",le="2.5"} 5
hacheck_request_duration_seconds_bucket{protocol="http",le="5"} 5
hacheck_request_duration_seconds_bucket{protocol="http",le="10"} 5
hacheck_request_duration_seconds_bucket{protocol="http",le="30"} 5
hacheck_request_duration_seconds_bucket{protocol="http",le="60"} 5
hacheck_request_duration_seconds_bucket{protocol="http",le="120"} 5
hacheck_request_duration_seconds_bucket{protocol="http",le="300"} 5
hacheck_request_duration_seconds_bucket{protocol="http",le="+Inf"} 5
hacheck_request_duration_seconds_sum{protocol="http"} 0.75025
hacheck_request_duration_seconds_count{protocol="http"} 5
hacheck_request_duration_seconds_bucket{protocol="tcp",le="0.0001"} 0
hacheck_request_duration_seconds_bucket{protocol="tcp",le="0.00025"} 0
hacheck_request_duration_seconds_bucket{protocol="tcp",le="0.0005"} 0
hacheck_request_duration_seconds_bucket{protocol="tcp",le="0.001"} 1
hacheck_request_duration_seconds_bucket{protocol="tcp",le="0.0025"} 1
hacheck_request_duration_seconds_bucket{protocol="tcp",le="0.005"} 1
hacheck_request_duration_seconds_bucket{protocol="tcp",le="0.01"} 1
hacheck_request_duration_seconds_bucket{protocol="tcp",le="0.025"} 1
hacheck_request_duration_seconds_bucket{protocol="tcp",le="0.05"} 1
hacheck_request_duration_seconds_bucket{protocol="tcp",le="0.1"} 1
hacheck_request_duration_seconds_bucket{protocol="tcp",le="0.25"} 1
hacheck_request_duration_seconds_bucket{protocol="tcp",le="0.5"} 1
hacheck_request_duration_seconds_bucket{protocol="tcp",le="1"} 1
hacheck_request_duration_seconds_bucket{protocol="tcp",le="2.5"} 1
hacheck_request_duration_seconds_bucket{protocol="tcp",le="5"} 1
hacheck_request_duration_seconds_bucket{protocol="tcp",le="10"} 2
hacheck_request_duration_seconds_bucket{protocol="tcp",le="30"} 2
hacheck_request_duration_seconds_bucket{protocol="tcp",le="60"} 2
hacheck_request_duration_seconds_bucket{protocol="tcp",le="120"} 2
hacheck_request_duration_seconds_bucket{protocol="tcp",le="300"} 2
hacheck_request_duration_seconds_bucket{protocol="tcp",le="+Inf"} 2
hacheck_request_duration_seconds_sum{protocol="tcp"} 10.001
hacheck_request_duration_seconds_count{protocol="tcp"} 2
hacheck_request_duration_seconds_bucket{protocol="unknown",le="0.0001"} 1
hacheck_request_duration_seconds_bucket{protocol="unknown",le="0.00025"} 1
hacheck_request_duration_seconds_bucket{protocol="unknown",le="0.0005"} 1
hacheck_request_duration_seconds_bucket{protocol="unknown",le="0.001"} 1
hacheck_request_duration_seconds_bucket{protocol="unknown",le="0.0025"} 1
hacheck_request_duration_seconds_bucket{protocol="unknown",le="0.005"} 1
hacheck_request_duration_seconds_bucket{protocol="unknown",le="0.01"} 1
hacheck_request_duration_seconds_bucket{protocol="unknown",le="0.025"} 1
hacheck_request_duration_seconds_bucket{protocol="unknown",le="0.05"} 1
hacheck_request_duration_seconds_bucket{protocol="unknown",le="0.1"} 1
hacheck_request_duration_seconds_bucket{protocol="unknown",le="0.25"} 1
hacheck_request_duration_seconds_bucket{protocol="unknown",le="0.5"} 1
hacheck_request_duration_seconds_bucket{protocol="unknown",le="1"} 1
hacheck_request_duration_seconds_bucket{protocol="unknown",le="2.5"} 1
hacheck_request_duration_seconds_bucket{protocol="unknown",le="5"} 1
hacheck_request_duration_seconds_bucket{protocol="unknown",le="10"} 1
hacheck_request_duration_seconds_bucket{protocol="unknown",le="30"} 1
hacheck_request_duration_seconds_bucket{protocol="unknown",le="60"} 1
hacheck_request_duration_seconds_bucket{protocol="unknown",le="120"} 1
hacheck_request_duration_seconds_bucket{protocol="unknown",le="300"} 1
hacheck_request_duration_seconds_bucket{protocol="unknown",le="+Inf"} 1
hacheck_request_duration_seconds_sum{protocol="unknown"} 0
hacheck_request_duration_seconds_count{protocol="unknown"} 1
`, "hacheck_requests_total", "hacheck_requests_by_source_total", "hacheck_label_overflow_total", "hacheck_request_duration_seconds")
}

func TestObserverCacheAndInFlight(t *testing.T) {
	m, _ := newTestMetrics(t, Options{})
	compare(t, m, `
# HELP hacheck_cache_requests_total Check requests that reached the result cache, by how it served them (hit, miss, coalesced, bypass).
# TYPE hacheck_cache_requests_total counter
hacheck_cache_requests_total{result="bypass"} 0
hacheck_cache_requests_total{result="coalesced"} 0
hacheck_cache_requests_total{result="hit"} 0
hacheck_cache_requests_total{result="miss"} 0
# HELP hacheck_checks_in_flight Upstream checks running now.
# TYPE hacheck_checks_in_flight gauge
hacheck_checks_in_flight 0
`, "hacheck_cache_requests_total", "hacheck_checks_in_flight", "hacheck_check_duration_seconds")

	m.CheckStarted("http")
	m.CheckStarted("http")
	m.CheckStarted("tcp")
	m.CheckFinished("http", check.OutcomeUpstreamFail, 2*time.Second)
	for _, r := range []check.CacheResult{check.CacheHit, check.CacheHit, check.CacheHit, check.CacheMiss, check.CacheCoalesced, check.CacheBypass, "", "bogus"} {
		m.CacheServed("http", r)
	}
	compare(t, m, `
# HELP hacheck_cache_requests_total Check requests that reached the result cache, by how it served them (hit, miss, coalesced, bypass).
# TYPE hacheck_cache_requests_total counter
hacheck_cache_requests_total{result="bypass"} 1
hacheck_cache_requests_total{result="coalesced"} 1
hacheck_cache_requests_total{result="hit"} 3
hacheck_cache_requests_total{result="miss"} 1
# HELP hacheck_checks_in_flight Upstream checks running now.
# TYPE hacheck_checks_in_flight gauge
hacheck_checks_in_flight 2
# HELP hacheck_check_duration_seconds Time an upstream check took (cache misses and bypasses only), by protocol and result.
# TYPE hacheck_check_duration_seconds histogram
hacheck_check_duration_seconds_bucket{protocol="http",result="upstream_fail",le="0.0001"} 0
hacheck_check_duration_seconds_bucket{protocol="http",result="upstream_fail",le="0.00025"} 0
hacheck_check_duration_seconds_bucket{protocol="http",result="upstream_fail",le="0.0005"} 0
hacheck_check_duration_seconds_bucket{protocol="http",result="upstream_fail",le="0.001"} 0
hacheck_check_duration_seconds_bucket{protocol="http",result="upstream_fail",le="0.0025"} 0
hacheck_check_duration_seconds_bucket{protocol="http",result="upstream_fail",le="0.005"} 0
hacheck_check_duration_seconds_bucket{protocol="http",result="upstream_fail",le="0.01"} 0
hacheck_check_duration_seconds_bucket{protocol="http",result="upstream_fail",le="0.025"} 0
hacheck_check_duration_seconds_bucket{protocol="http",result="upstream_fail",le="0.05"} 0
hacheck_check_duration_seconds_bucket{protocol="http",result="upstream_fail",le="0.1"} 0
hacheck_check_duration_seconds_bucket{protocol="http",result="upstream_fail",le="0.25"} 0
hacheck_check_duration_seconds_bucket{protocol="http",result="upstream_fail",le="0.5"} 0
hacheck_check_duration_seconds_bucket{protocol="http",result="upstream_fail",le="1"} 0
hacheck_check_duration_seconds_bucket{protocol="http",result="upstream_fail",le="2.5"} 1
hacheck_check_duration_seconds_bucket{protocol="http",result="upstream_fail",le="5"} 1
hacheck_check_duration_seconds_bucket{protocol="http",result="upstream_fail",le="10"} 1
hacheck_check_duration_seconds_bucket{protocol="http",result="upstream_fail",le="30"} 1
hacheck_check_duration_seconds_bucket{protocol="http",result="upstream_fail",le="60"} 1
hacheck_check_duration_seconds_bucket{protocol="http",result="upstream_fail",le="120"} 1
hacheck_check_duration_seconds_bucket{protocol="http",result="upstream_fail",le="300"} 1
hacheck_check_duration_seconds_bucket{protocol="http",result="upstream_fail",le="+Inf"} 1
hacheck_check_duration_seconds_sum{protocol="http",result="upstream_fail"} 2
hacheck_check_duration_seconds_count{protocol="http",result="upstream_fail"} 1
`, "hacheck_cache_requests_total", "hacheck_checks_in_flight", "hacheck_check_duration_seconds")
}

func TestLabelOverflow(t *testing.T) {
	m, _ := newTestMetrics(t, Options{MaxServices: 2, MaxSources: 2})
	for _, r := range []request{
		{"http", "a", "192.0.2.1", 200, check.OutcomeOK, 0},
		{"http", "b", "192.0.2.2", 200, check.OutcomeOK, 0},
		{"http", "c", "192.0.2.3", 200, check.OutcomeOK, 0}, // both refused
		{"http", "c", "192.0.2.3", 200, check.OutcomeOK, 0}, // refused again: counted again
		{"http", "a", "192.0.2.2", 200, check.OutcomeOK, 0}, // admitted ones still count
		{"http", "", "192.0.2.4", 400, check.OutcomeError, 0},
	} {
		r.observe(m)
	}
	compare(t, m, requestsTotalHeader+`hacheck_requests_total{code="200",protocol="http",result="ok",service="a"} 2
hacheck_requests_total{code="200",protocol="http",result="ok",service="b"} 1
hacheck_requests_total{code="200",protocol="http",result="ok",service="other"} 2
hacheck_requests_total{code="400",protocol="http",result="error",service="invalid"} 1
# HELP hacheck_requests_by_source_total Check requests answered, by source address or source_networks name.
# TYPE hacheck_requests_by_source_total counter
hacheck_requests_by_source_total{source="192.0.2.1"} 1
hacheck_requests_by_source_total{source="192.0.2.2"} 2
hacheck_requests_by_source_total{source="other"} 3
# HELP hacheck_label_overflow_total Requests whose service or source was counted as "other" because max_services or max_source_ips distinct values already have their own series.
# TYPE hacheck_label_overflow_total counter
hacheck_label_overflow_total{label="service"} 2
hacheck_label_overflow_total{label="source"} 3
`, "hacheck_requests_total", "hacheck_requests_by_source_total", "hacheck_label_overflow_total")

	// The labels /status/count and /recent use agree, and asking does not count an overflow.
	for _, tc := range []struct{ service, want string }{{"a", "a"}, {"b", "b"}, {"c", LabelOther}, {"", LabelInvalid}} {
		if got := m.ServiceLabel(tc.service); got != tc.want {
			t.Errorf("ServiceLabel(%q) = %q, want %q", tc.service, got, tc.want)
		}
	}
	if got := testutil.ToFloat64(m.overflowService); got != 2 {
		t.Errorf("ServiceLabel counted an overflow: hacheck_label_overflow_total{label=\"service\"} = %v, want 2", got)
	}
}

func TestSourceLabel(t *testing.T) {
	m, _ := newTestMetrics(t, Options{MaxSources: 1, SourceNetworks: map[string][]netip.Prefix{
		"lb-east":  {netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("2001:db8:e::/48")},
		"lb-inner": {netip.MustParsePrefix("10.1.5.0/24")},
		"mapped":   {netip.MustParsePrefix("::ffff:172.16.0.0/108")},
	}})
	for _, tc := range []struct{ addr, want string }{
		{"10.1.2.3", "lb-east"},
		{"::ffff:10.1.2.3", "lb-east"},
		{"2001:db8:e::7", "lb-east"},
		{"10.1.5.9", "lb-inner"}, // longest prefix wins
		{"172.16.3.4", "mapped"},
		{"::ffff:192.0.2.1", "192.0.2.1"}, // takes the one slot
		{"192.0.2.1", "192.0.2.1"},
		{"192.0.2.2", LabelOther},
		{"fe80::1%eth0", LabelOther},
		{"10.1.9.9", "lb-east"}, // networks never need a slot
	} {
		if got := m.SourceLabel(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("SourceLabel(%s) = %q, want %q", tc.addr, got, tc.want)
		}
	}
	if got := m.SourceLabel(netip.Addr{}); got != LabelUnknown {
		t.Errorf("SourceLabel(invalid) = %q, want %q", got, LabelUnknown)
	}
	if n := m.sources.len(); n != 1 {
		t.Errorf("%d sources admitted, want 1", n)
	}

	// A reload that drops a network sends its sources to the address slots; one that adds a
	// network takes even an admitted address under the name.
	m.SetOptions(Options{MaxSources: 2, SourceNetworks: map[string][]netip.Prefix{"doc": {netip.MustParsePrefix("192.0.2.0/24")}}})
	for _, tc := range []struct{ addr, want string }{
		{"192.0.2.1", "doc"},
		{"10.1.2.3", "10.1.2.3"},
		{"10.1.2.4", LabelOther},
	} {
		if got := m.SourceLabel(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("after reload: SourceLabel(%s) = %q, want %q", tc.addr, got, tc.want)
		}
	}
}

func TestSetOptionsKeepsAdmitted(t *testing.T) {
	m, _ := newTestMetrics(t, Options{MaxServices: 3})
	for _, s := range []string{"a", "b", "c"} {
		m.ServiceLabel(s)
	}
	m.SetOptions(Options{MaxServices: 1})
	for _, tc := range []struct{ service, want string }{{"a", "a"}, {"c", "c"}, {"d", LabelOther}} {
		if got := m.ServiceLabel(tc.service); got != tc.want {
			t.Errorf("after lowering: ServiceLabel(%q) = %q, want %q", tc.service, got, tc.want)
		}
	}
	m.SetOptions(Options{MaxServices: 4})
	for _, tc := range []struct{ service, want string }{{"d", "d"}, {"e", LabelOther}} {
		if got := m.ServiceLabel(tc.service); got != tc.want {
			t.Errorf("after raising: ServiceLabel(%q) = %q, want %q", tc.service, got, tc.want)
		}
	}
	m.SetOptions(Options{})
	if got := m.services.max.Load(); got != DefaultMaxServices {
		t.Errorf("zero Options: MaxServices %d, want %d", got, DefaultMaxServices)
	}
	if got := m.sources.max.Load(); got != DefaultMaxSources {
		t.Errorf("zero Options: MaxSources %d, want %d", got, DefaultMaxSources)
	}
}

// TestConcurrentUse runs every entry point at once; its assertions are the race detector's and
// the caps'.
func TestConcurrentUse(t *testing.T) {
	m, store := newTestMetrics(t, Options{MaxServices: 50, MaxSources: 50})
	if _, err := store.Down("web", 0, "concurrent", time.Time{}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	for g := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 2000 {
				addr := netip.AddrFrom4([4]byte{10, 0, byte(g), byte(i)})
				m.ObserveRequest("http", fmt.Sprintf("svc%d", i%200), addr, 200, check.OutcomeOK, time.Millisecond)
				m.CheckStarted("http")
				m.CheckFinished("http", check.OutcomeOK, time.Millisecond)
				m.CacheServed("http", check.CacheMiss)
				if i%500 == 0 {
					m.SetOptions(Options{MaxServices: 40 + i%20, MaxSources: 40 + i%20})
					m.ConfigReloaded(true, testNow)
					if _, err := m.Registry().Gather(); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	for range 4 {
		<-done
	}
	if n := m.services.len(); n > 50 {
		t.Errorf("%d services admitted, cap was at most 50", n)
	}
	if n := m.sources.len(); n > 50 {
		t.Errorf("%d sources admitted, cap was at most 50", n)
	}
	compare(t, m, `
# HELP hacheck_checks_in_flight Upstream checks running now.
# TYPE hacheck_checks_in_flight gauge
hacheck_checks_in_flight 0
`, "hacheck_checks_in_flight")
}

func TestCardinalityBounded(t *testing.T) {
	const maxServices, maxSources = 2000, 1000
	m, _ := newTestMetrics(t, Options{MaxServices: maxServices, MaxSources: maxSources})
	answers := []struct {
		code    int
		outcome check.Outcome
	}{{200, check.OutcomeOK}, {503, check.OutcomeUpstreamFail}, {503, check.OutcomeTimeout}}
	sources := make([]netip.Addr, 5000)
	for i := range sources {
		sources[i] = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	}
	state := uint64(1)
	random := func() uint64 { // xorshift: deterministic, no shared rand state
		state ^= state << 13
		state ^= state >> 7
		state ^= state << 17
		return state
	}
	for i := range 100_000 {
		a := answers[i%len(answers)]
		service := fmt.Sprintf("svc-%x", random())
		m.ObserveRequest("http", service, sources[random()%uint64(len(sources))], a.code, a.outcome, time.Millisecond)
	}

	for _, tc := range []struct {
		family string
		max    int
	}{
		{"hacheck_requests_total", (maxServices + 1) * len(answers)},
		{"hacheck_requests_by_source_total", maxSources + 1},
		{"hacheck_request_duration_seconds", 1},
	} {
		n, err := testutil.GatherAndCount(m.Registry(), tc.family)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 || n > tc.max {
			t.Errorf("%s has %d series, want 1..%d", tc.family, n, tc.max)
		}
	}
	if n := m.services.len(); n != maxServices {
		t.Errorf("%d services admitted, want exactly %d", n, maxServices)
	}
	if n := m.sources.len(); n != maxSources {
		t.Errorf("%d sources admitted, want exactly %d", n, maxSources)
	}
	for _, c := range []struct {
		label string
		value float64
	}{{"service", testutil.ToFloat64(m.overflowService)}, {"source", testutil.ToFloat64(m.overflowSource)}} {
		if c.value == 0 {
			t.Errorf("hacheck_label_overflow_total{label=%q} = 0 after overflowing", c.label)
		}
	}
	if got, want := testutil.ToFloat64(m.overflowService), float64(100_000-maxServices); got != want {
		t.Errorf("service overflow %v, want %v (every refused request)", got, want)
	}
}

func TestBuildInfoAndReload(t *testing.T) {
	m, _ := newTestMetrics(t, Options{})
	if got := testutil.ToFloat64(m.reloadOK); got != 1 {
		t.Errorf("hacheck_config_last_reload_successful = %v at start, want 1", got)
	}
	if got := testutil.ToFloat64(m.reloadTime); got < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("hacheck_config_last_reload_success_timestamp_seconds = %v at start, want about now", got)
	}
	m.ConfigReloaded(true, testNow)
	m.ConfigReloaded(false, testNow.Add(time.Hour))
	compare(t, m, fmt.Sprintf(`
# HELP hacheck_build_info Always 1; the labels say which hacheck build is running.
# TYPE hacheck_build_info gauge
hacheck_build_info{goversion=%q,revision=%q,version="1.2.3"} 1
# HELP hacheck_config_last_reload_successful Whether the last configuration load succeeded (1) or failed (0).
# TYPE hacheck_config_last_reload_successful gauge
hacheck_config_last_reload_successful 0
# HELP hacheck_config_last_reload_success_timestamp_seconds Unix time of the last successful configuration load.
# TYPE hacheck_config_last_reload_success_timestamp_seconds gauge
hacheck_config_last_reload_success_timestamp_seconds 1735787045
`, runtime.Version(), vcsRevision()), "hacheck_build_info", "hacheck_config_last_reload_successful", "hacheck_config_last_reload_success_timestamp_seconds")
}

func TestLint(t *testing.T) {
	m, _ := populated(t)
	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// populated is a registry with a series in every hacheck family.
func populated(t *testing.T) (*Metrics, *spool.Store) {
	t.Helper()
	m, store := newTestMetrics(t, Options{MaxServices: 1, MaxSources: 1})
	for _, r := range []request{
		{"http", "web", "192.0.2.1", 200, check.OutcomeOK, time.Millisecond},
		{"http", "api", "192.0.2.2", 503, check.OutcomeTimeout, 10 * time.Second},
	} {
		r.observe(m)
	}
	m.CheckStarted("http")
	m.CheckFinished("http", check.OutcomeOK, time.Millisecond)
	m.CacheServed("http", check.CacheMiss)
	if _, err := store.Down("web", 8080, "deploy \"v2\"\nsecond line", testNow.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Down(spool.AllServices, 0, "", time.Time{}); err != nil {
		t.Fatal(err)
	}
	return m, store
}

func TestHandlerNegotiatesNativeHistograms(t *testing.T) {
	m, _ := populated(t)
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()

	for _, tc := range []struct {
		accept      string
		contentType string
	}{
		{"", "text/plain"},
		{"application/openmetrics-text;version=1.0.0", "application/openmetrics-text"},
		{"application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited", "application/vnd.google.protobuf"},
	} {
		req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		if tc.accept != "" {
			req.Header.Set("Accept", tc.accept)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), tc.contentType) {
			t.Fatalf("Accept %q: %d %s, want 200 %s", tc.accept, resp.StatusCode, resp.Header.Get("Content-Type"), tc.contentType)
		}
		dec := expfmt.NewDecoder(resp.Body, expfmt.ResponseFormat(resp.Header))
		if strings.HasPrefix(tc.contentType, "application/openmetrics") {
			continue // no OpenMetrics decoder in expfmt; the content type is the point
		}
		var native bool
		for {
			var mf dto.MetricFamily
			if err := dec.Decode(&mf); err != nil {
				break
			}
			if mf.GetName() != "hacheck_request_duration_seconds" {
				continue
			}
			for _, metric := range mf.GetMetric() {
				h := metric.GetHistogram()
				if n := len(h.GetBucket()); n < len(durationBuckets) { // text adds +Inf, protobuf doesn't
					t.Errorf("Accept %q: %d classic buckets, want %d", tc.accept, n, len(durationBuckets))
				}
				if h.Schema != nil && len(h.GetPositiveSpan()) > 0 {
					native = true
				}
			}
		}
		if wantNative := tc.contentType == "application/vnd.google.protobuf"; native != wantNative {
			t.Errorf("Accept %q: native histogram exposed %v, want %v", tc.accept, native, wantNative)
		}
	}
}

// failingCollector reports one collection error.
type failingCollector struct{ desc *prometheus.Desc }

func (c failingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c failingCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.NewInvalidMetric(c.desc, errors.New("broken on purpose"))
}

type recordingLogger struct {
	mu    sync.Mutex
	lines []string
}

func (l *recordingLogger) Println(v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprint(v...))
}

// TestHandlerContinuesOnError: one failing collector is logged to Options.ErrorLog and costs
// only its own series, not the scrape.
func TestHandlerContinuesOnError(t *testing.T) {
	logger := &recordingLogger{}
	m, _ := newTestMetrics(t, Options{ErrorLog: logger})
	m.Registry().MustRegister(failingCollector{prometheus.NewDesc("hacheck_test_broken", "Broken on purpose.", nil, nil)})
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "hacheck_build_info{") {
		t.Errorf("scrape with a failing collector: %d, body without hacheck_build_info", rec.Code)
	}
	logger.mu.Lock()
	defer logger.mu.Unlock()
	if len(logger.lines) == 0 || !strings.Contains(strings.Join(logger.lines, "\n"), "broken on purpose") {
		t.Errorf("ErrorLog got %q, want the collector's error", logger.lines)
	}
}

// check_timeout may be up to 300 s, so slow checks and requests must still land in a finite
// bucket rather than only in +Inf.
func TestDurationBucketsReachMaxCheckTimeout(t *testing.T) {
	m, _ := newTestMetrics(t, Options{})
	m.CheckStarted("http")
	m.CheckFinished("http", check.OutcomeTimeout, 45*time.Second)
	m.CheckStarted("http")
	m.CheckFinished("http", check.OutcomeTimeout, 300*time.Second)
	request{"http", "web", "192.0.2.1", 503, check.OutcomeTimeout, 100 * time.Second}.observe(m)

	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[float64]uint64{
		"hacheck_check_duration_seconds":   {10: 0, 30: 0, 60: 1, 120: 1, 300: 2},
		"hacheck_request_duration_seconds": {10: 0, 30: 0, 60: 0, 120: 1, 300: 1},
	}
	for _, mf := range families {
		buckets, ok := want[mf.GetName()]
		if !ok {
			continue
		}
		delete(want, mf.GetName())
		got := map[float64]uint64{}
		for _, b := range mf.GetMetric()[0].GetHistogram().GetBucket() {
			if _, ok := buckets[b.GetUpperBound()]; ok {
				got[b.GetUpperBound()] = b.GetCumulativeCount()
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(buckets) {
			t.Errorf("%s cumulative buckets %v, want %v", mf.GetName(), got, buckets)
		}
	}
	if len(want) != 0 {
		t.Errorf("families missing: %v", want)
	}
}

func TestUnixSecondsBeyond2262(t *testing.T) {
	for _, tc := range []struct {
		t    time.Time
		want float64
	}{
		{time.Unix(1735787045, 500_000_000), 1735787045.5},
		{time.Unix(20_000_000_000, 0), 2e10}, // year 2603: UnixNano overflows
		{time.Unix(1e12, 250_000_000), 1e12 + .25},
	} {
		if got := unixSeconds(tc.t); got != tc.want {
			t.Errorf("unixSeconds(%v) = %v, want %v", tc.t, got, tc.want)
		}
	}
}

// Answers from a cache entry keep the service's series in the entry's memo. What the memo
// holds must count exactly as a fresh lookup would: a refused service is not remembered (it
// gets its own series once a reload raises the cap), and a service whose checks change
// result moves between its counters and back.
func TestObserveAnswerThroughMemo(t *testing.T) {
	m, _ := newTestMetrics(t, Options{MaxServices: 1})
	source := netip.MustParseAddr("192.0.2.1")
	var memoA, memoB check.Memo
	answer := func(service string, memo *check.Memo, code int, outcome check.Outcome) {
		m.ObserveAnswer(check.Answer{Protocol: "http", Service: service, Code: code, Outcome: outcome, Memo: memo}, source, 0)
	}
	answer("a", &memoA, 200, check.OutcomeOK)
	answer("b", &memoB, 200, check.OutcomeOK) // refused: counted as "other"
	if memoB.Load() != nil {
		t.Fatal("a refused service's series was kept in its memo")
	}
	m.SetOptions(Options{MaxServices: 2})
	answer("b", &memoB, 200, check.OutcomeOK)
	answer("b", &memoB, 200, check.OutcomeOK)
	answer("a", &memoA, 503, check.OutcomeUpstreamFail)
	answer("a", &memoA, 200, check.OutcomeOK)
	answer("a", nil, 200, check.OutcomeOK) // no memo: the same series
	compare(t, m, requestsTotalHeader+`hacheck_requests_total{code="200",protocol="http",result="ok",service="a"} 3
hacheck_requests_total{code="200",protocol="http",result="ok",service="b"} 2
hacheck_requests_total{code="200",protocol="http",result="ok",service="other"} 1
hacheck_requests_total{code="503",protocol="http",result="upstream_fail",service="a"} 1
`, "hacheck_requests_total")
	if memoA.Load() == nil || memoB.Load() == nil {
		t.Error("admitted services' series were not kept in their memos")
	}
}

// A request counter whose labels cannot be exported fails its own series in the scrape, not
// the other series of hacheck_requests_total.
func TestUnexportableRequestCounterFailsOnlyItself(t *testing.T) {
	logger := &recordingLogger{}
	m, _ := newTestMetrics(t, Options{ErrorLog: logger})
	func() {
		defer func() { recover() }() // the duration histogram refuses the label at once
		m.ObserveRequest("\xff", "web", netip.Addr{}, 200, check.OutcomeOK, 0)
	}()
	m.ObserveRequest("http", "web", netip.Addr{}, 200, check.OutcomeOK, 0)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `hacheck_requests_total{code="200",protocol="http",result="ok",service="web"} 1`) {
		t.Errorf("scrape: %d, body without the valid series:\n%s", rec.Code, rec.Body.String())
	}
	logger.mu.Lock()
	defer logger.mu.Unlock()
	if !strings.Contains(strings.Join(logger.lines, "\n"), `hacheck_requests_total for service "web"`) {
		t.Errorf("ErrorLog got %q, want the invalid series' error", logger.lines)
	}
}

// requestsTotalHeader opens the expected exposition of hacheck_requests_total.
const requestsTotalHeader = `
# HELP hacheck_requests_total Check requests answered, by protocol, service, HTTP response code and result (ok, spool_down, upstream_fail, timeout, refused, error).
# TYPE hacheck_requests_total counter
`
