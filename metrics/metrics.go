// Package metrics is hacheck's Prometheus instrumentation: the check.Observer the pipeline
// reports upstream checks to, the per-request counters the HTTP server feeds, a collector that
// reads the spool on every scrape, and the label bounding (max_services, max_source_ips,
// source_networks) shared with /status/count and /recent.
//
// Everything lives in one private prometheus.Registry; nothing touches the global one. The hot
// path (ObserveRequest and the Observer methods) looks up cached metric handles in read-mostly
// maps (see readMostly) and allocates nothing once a label tuple has been seen.
package metrics

import (
	"log"
	"net/http"
	"net/netip"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hacheck/hacheck/check"
	"github.com/hacheck/hacheck/internal/buildinfo"
	"github.com/hacheck/hacheck/spool"
)

// Label values hacheck itself puts in place of client-supplied ones.
const (
	// LabelOther replaces a service, source or protocol beyond its cap.
	LabelOther = "other"
	// LabelInvalid is the service label of a request whose service name was invalid ("").
	LabelInvalid = "invalid"
	// LabelUnknown is the protocol label of a request for an unknown protocol (""), and the
	// source label of a request without a valid source address.
	LabelUnknown = "unknown"
)

// Defaults for Options fields left at zero (or negative).
const (
	// DefaultMaxServices is max_services' default.
	DefaultMaxServices = 2000
	// DefaultMaxSources is max_source_ips' default.
	DefaultMaxSources = 1000
)

var _ check.Observer = (*Metrics)(nil)

// maxProtocols bounds the protocol label. The pipeline only reports registered protocols (and
// "" for any other), so this is a guard against a caller passing raw URL segments, not a knob.
const maxProtocols = 64

// durationBuckets are the classic buckets of both latency histograms: from 100 µs (a cached
// answer) to 300 s (the largest check_timeout the config accepts; the default is 10 s).
var durationBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// Options are the reloadable limits of the metrics. The zero value means the defaults.
type Options struct {
	// MaxServices is how many distinct service names get their own label value (max_services);
	// later ones are counted as "other". 0 means DefaultMaxServices.
	MaxServices int
	// MaxSources is how many distinct source addresses get their own label value
	// (max_source_ips); later ones are counted as "other". 0 means DefaultMaxSources.
	MaxSources int
	// SourceNetworks names CIDRs (source_networks): a source inside one is counted under the
	// name and uses no MaxSources slot. When networks overlap, the longest prefix wins.
	SourceNetworks map[string][]netip.Prefix
	// ErrorLog receives errors gathering or serving /metrics. nil keeps the current one, which
	// starts as the standard library's default logger.
	ErrorLog promhttp.Logger
}

// Metrics holds hacheck's metrics and their registry. All methods are safe for concurrent use.
type Metrics struct {
	reg      *prometheus.Registry
	handler  http.Handler
	errorLog errorLog

	services         *limiter[string, *serviceSeries]
	newServiceSeries func(string) *serviceSeries // made once: a method value per call would allocate
	pairs            *pairCounts                 // /status/count
	otherService     serviceSeries               // services beyond the cap
	invalidService   serviceSeries               // requests whose service name was invalid
	sources          *limiter[netip.Addr, *sourceSeries]
	protocols        *limiter[string, string]
	networks         networkTable

	requests        requestCounters
	requestsSource  *prometheus.CounterVec
	requestDuration *prometheus.HistogramVec
	checkDuration   *prometheus.HistogramVec
	cacheRequests   cacheCounters
	inFlight        prometheus.Gauge
	overflow        *prometheus.CounterVec
	overflowService prometheus.Counter
	overflowSource  prometheus.Counter
	reloadOK        prometheus.Gauge
	reloadTime      prometheus.Gauge
	spoolChanges    *prometheus.CounterVec // hacheck_spool_changes_total (changes.go)

	// Handle caches, keyed by bounded label values only, so they are as bounded as the series.
	requestCells    readMostly[requestKey, *requestCell]    // hacheck_requests_total, exported by requestCounters
	labelSeries     readMostly[string, sourceSeries]        // source labels that are not admitted addresses
	requestObserver readMostly[string, prometheus.Observer] // by protocol label
	checkObserver   readMostly[checkKey, prometheus.Observer]
}

type requestKey struct {
	protocol, service string
	code              int
	outcome           check.Outcome
}

type checkKey struct {
	protocol string
	outcome  check.Outcome
}

// sourceSeries is what the source limiter stores per admitted address: its label text and its
// counter, so a request from a known address costs one map lookup.
type sourceSeries struct {
	label    string
	id       uint32 // in /status/count's table
	counter  prometheus.Counter
	overflow bool // not a series: the address was refused a slot and counts as "other"
}

// New builds the metrics over store (nil: no spool metrics) in a registry of their own.
// version is the hacheck_build_info version label.
func New(store *spool.Store, version string, opts Options) *Metrics {
	m := &Metrics{
		reg:       prometheus.NewRegistry(),
		services:  newLimiter[string, *serviceSeries](),
		sources:   newLimiter[netip.Addr, *sourceSeries](),
		protocols: newLimiter[string, string](),
	}
	m.otherService.label, m.invalidService.label = LabelOther, LabelInvalid
	m.pairs = newPairCounts(&m.otherService, &m.invalidService)
	m.newServiceSeries = m.makeServiceSeries
	m.protocols.setMax(maxProtocols)
	m.errorLog.set(log.Default())
	m.SetOptions(opts)

	m.requests = requestCounters{cells: &m.requestCells, desc: prometheus.NewDesc("hacheck_requests_total",
		"Check requests answered, by protocol, service, HTTP response code and result (ok, spool_down, upstream_fail, timeout, refused, error).",
		[]string{"protocol", "service", "code", "result"}, nil)}
	m.requestsSource = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hacheck_requests_by_source_total",
		Help: "Check requests answered, by source address or source_networks name.",
	}, []string{"source"})
	m.requestDuration = prometheus.NewHistogramVec(histogramOpts(
		"hacheck_request_duration_seconds",
		"Time to answer a check request, spool gate and cache included.",
	), []string{"protocol"})
	m.checkDuration = prometheus.NewHistogramVec(histogramOpts(
		"hacheck_check_duration_seconds",
		"Time an upstream check took (cache misses and bypasses only), by protocol and result.",
	), []string{"protocol", "result"})
	cache := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hacheck_cache_requests_total",
		Help: "Check requests that reached the result cache, by how it served them (hit, miss, coalesced, bypass).",
	}, []string{"result"})
	for _, r := range check.CacheResults {
		*m.cacheRequests.of(r) = cache.WithLabelValues(string(r))
	}
	m.inFlight = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "hacheck_checks_in_flight",
		Help: "Upstream checks running now.",
	})
	m.overflow = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "hacheck_label_overflow_total",
		Help: "Requests whose service or source was counted as \"other\" because max_services or max_source_ips distinct values already have their own series.",
	}, []string{"label"})
	m.overflowService = m.overflow.WithLabelValues("service")
	m.overflowSource = m.overflow.WithLabelValues("source")
	m.reloadOK = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "hacheck_config_last_reload_successful",
		Help: "Whether the last configuration load succeeded (1) or failed (0).",
	})
	m.reloadTime = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "hacheck_config_last_reload_success_timestamp_seconds",
		Help: "Unix time of the last successful configuration load.",
	})
	m.ConfigReloaded(true, time.Now())
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "hacheck_build_info",
		Help: "Always 1; the labels say which hacheck build is running.",
	}, []string{"version", "revision", "goversion"})
	if version == "" {
		version = LabelUnknown
	}
	buildInfo.WithLabelValues(version, vcsRevision(), runtime.Version()).Set(1)

	m.reg.MustRegister(m.requests, m.requestsSource, m.requestDuration, m.checkDuration, cache,
		m.inFlight, m.overflow, m.reloadOK, m.reloadTime, buildInfo,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.spoolChanges = newSpoolChanges(m.reg)
	if store != nil {
		m.reg.MustRegister(newSpoolCollector(store))
	}

	// OpenMetrics is enabled so that a text scrape formats "le" like a protobuf scrape does
	// ("1.0"), keeping bucket series identical whichever format Prometheus negotiates. Native
	// histograms travel only in the protobuf format, which promhttp always offers.
	m.handler = promhttp.InstrumentMetricHandler(m.reg, promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog: &m.errorLog,
		// A failing collector (the spool) must not take every other metric down with it.
		ErrorHandling:       promhttp.ContinueOnError,
		Registry:            m.reg,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
		EnableOpenMetrics:   true,
	}))
	return m
}

func histogramOpts(name, help string) prometheus.HistogramOpts {
	return prometheus.HistogramOpts{
		Name:                            name,
		Help:                            help,
		Buckets:                         durationBuckets,
		NativeHistogramBucketFactor:     1.1,
		NativeHistogramMaxBucketNumber:  100,
		NativeHistogramMinResetDuration: time.Hour,
	}
}

// vcsRevision is the commit the binary was built from, or "unknown".
func vcsRevision() string { return buildinfo.Commit() }

// SetOptions applies reloaded limits. Values already admitted keep their series even if a cap
// was lowered below their number; no new ones are admitted until the count is under the cap.
func (m *Metrics) SetOptions(opts Options) {
	if opts.MaxServices <= 0 {
		opts.MaxServices = DefaultMaxServices
	}
	if opts.MaxSources <= 0 {
		opts.MaxSources = DefaultMaxSources
	}
	m.services.setMax(opts.MaxServices)
	m.sources.setMax(opts.MaxSources)
	m.networks.set(opts.SourceNetworks)
	if opts.ErrorLog != nil {
		m.errorLog.set(opts.ErrorLog)
	}
}

// errorLog is the handler's promhttp.Logger, swappable on reload.
type errorLog struct{ v atomic.Value } // loggerBox

type loggerBox struct{ promhttp.Logger }

func (l *errorLog) set(logger promhttp.Logger) { l.v.Store(loggerBox{logger}) }

// Println implements promhttp.Logger.
func (l *errorLog) Println(v ...any) { l.v.Load().(loggerBox).Println(v...) }

// Handler serves the registry: text, OpenMetrics or protobuf (with native histograms) as the
// scraper negotiates, at most 4 scrapes at a time, each cut off after 10 s.
func (m *Metrics) Handler() http.Handler { return m.handler }

// Registry is the metrics' own registry, for tests and for registering more collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// CheckStarted counts an upstream check as in flight. It implements check.Observer.
func (m *Metrics) CheckStarted(protocol string) { m.inFlight.Inc() }

// CheckFinished ends an in-flight check and records its duration by protocol and outcome. It
// implements check.Observer.
func (m *Metrics) CheckFinished(protocol string, outcome check.Outcome, elapsed time.Duration) {
	m.inFlight.Dec()
	key := checkKey{protocol: m.protocolLabel(protocol), outcome: outcomeLabel(outcome)}
	lookup(&m.checkObserver, m, key, (*Metrics).newCheckObserver).Observe(elapsed.Seconds())
}

// CacheServed counts how the cache served a request; results outside check.CacheResults are
// ignored. It implements check.Observer.
func (m *Metrics) CacheServed(protocol string, result check.CacheResult) {
	if c := m.cacheRequests.of(result); c != nil {
		(*c).Inc()
	}
}

// cacheCounters are hacheck_cache_requests_total's series, one per check.CacheResults entry,
// created by New.
type cacheCounters struct {
	hit, miss, coalesced, bypass prometheus.Counter
}

// of is result's counter, or nil for a result that is not counted. New fills every one it
// returns for check.CacheResults, and panics (in every test) if a result there has no field.
func (c *cacheCounters) of(result check.CacheResult) *prometheus.Counter {
	switch result {
	case check.CacheHit:
		return &c.hit
	case check.CacheMiss:
		return &c.miss
	case check.CacheCoalesced:
		return &c.coalesced
	case check.CacheBypass:
		return &c.bypass
	}
	return nil
}

// ObserveRequest records one answered check request: its counter (protocol "" counts as
// "unknown", service "" as "invalid"), its source and its duration. A service or source beyond
// its cap is counted as "other" and adds one to hacheck_label_overflow_total for that label.
func (m *Metrics) ObserveRequest(protocol, service string, source netip.Addr, code int, outcome check.Outcome, elapsed time.Duration) RequestLabels {
	return m.observe(protocol, service, nil, source, code, outcome, elapsed)
}

// ObserveAnswer is ObserveRequest for a pipeline answer. When a cache entry answered, the
// service's series is kept in the entry's memo, so the next request it answers skips the
// service lookup.
func (m *Metrics) ObserveAnswer(a check.Answer, source netip.Addr, elapsed time.Duration) RequestLabels {
	return m.observe(a.Protocol, a.Service, a.Memo, source, a.Code, a.Outcome, elapsed)
}

func (m *Metrics) observe(protocol, service string, memo *check.Memo, source netip.Addr, code int, outcome check.Outcome, elapsed time.Duration) RequestLabels {
	p := m.protocolLabel(protocol)
	svc, overflow := m.serviceOf(service, memo)
	if overflow {
		m.overflowService.Inc()
	}
	oc := outcomeLabel(outcome)
	// A service's checks mostly end the same way, so its last counter is usually the one.
	cell := svc.last.Load()
	if cell == nil || cell.key.protocol != p || cell.key.code != code || cell.key.outcome != oc {
		key := requestKey{protocol: p, service: svc.label, code: code, outcome: oc}
		cell = lookup(&m.requestCells, m, key, func(_ *Metrics, key requestKey) *requestCell { return svc.newCell(key) })
		svc.last.Store(cell)
	}
	cell.n.Add(1)
	sourceLabel, sourceID, counter := m.sourceCounter(source)
	counter.Inc()
	lookup(&m.requestObserver, m, p, (*Metrics).newRequestObserver).Observe(elapsed.Seconds())
	return RequestLabels{Service: svc.label, Source: sourceLabel, slot: svc, sourceID: sourceID}
}

// serviceOf is the series service is counted under ("" is "invalid"; a service admitted now
// if there is room); overflow says it is "other" for want of a slot. memo, when not nil, is
// where the series of an admitted service is kept between requests.
func (m *Metrics) serviceOf(service string, memo *check.Memo) (svc *serviceSeries, overflow bool) {
	switch service {
	case "", LabelInvalid:
		return &m.invalidService, false
	case LabelOther:
		// A real service called "other" shares the overflow series: its label value would
		// be the same anyway, and one slot per label keeps /recent and /status/count whole.
		return &m.otherService, false
	}
	if memo != nil {
		if svc, ok := memo.Load().(*serviceSeries); ok {
			return svc, false
		}
	}
	svc, ok := m.services.get(service, m.newServiceSeries)
	if !ok {
		// Not kept in the memo: a reload may raise max_services, and the service must then
		// get its own series.
		return &m.otherService, true
	}
	if memo != nil {
		memo.Store(svc)
	}
	return svc, false
}

// RequestLabels are the bounded label values a request was counted under, for anything else
// that keeps per-service or per-source state (the server's /recent and /status/count) and must
// stay within the same caps.
type RequestLabels struct {
	Service  string
	Source   string
	slot     *serviceSeries // the service's slot, so Seen needs no second lookup
	sourceID uint32         // Source's id in /status/count's table
}

// ConfigReloaded records the outcome of a configuration load at time at; a failure leaves the
// last success timestamp alone. New records a success at its own start.
func (m *Metrics) ConfigReloaded(ok bool, at time.Time) {
	if !ok {
		m.reloadOK.Set(0)
		return
	}
	m.reloadOK.Set(1)
	m.reloadTime.Set(unixSeconds(at))
}

// lookup returns the cached handle for key, creating it with create on first use.
func lookup[K comparable, V any](cache *readMostly[K, V], m *Metrics, key K, create func(*Metrics, K) V) V {
	if v, ok := cache.loadPublished(key); ok {
		return v
	}
	v, _ := cache.loadOrStore(key, func() (V, bool) { return create(m, key), true })
	return v
}

func (m *Metrics) newRequestObserver(protocol string) prometheus.Observer {
	return m.requestDuration.WithLabelValues(protocol)
}

func (m *Metrics) newCheckObserver(k checkKey) prometheus.Observer {
	return m.checkDuration.WithLabelValues(k.protocol, string(k.outcome))
}

// newLabelSeries is the series of a source label that is not an admitted address: a network
// name, "other" or "unknown".
func (m *Metrics) newLabelSeries(label string) sourceSeries {
	return sourceSeries{label: label, id: m.pairs.sourceIDOf(label), counter: m.requestsSource.WithLabelValues(label)}
}

// protocolLabel bounds the protocol label: "" is "unknown", and past maxProtocols distinct
// values (which the pipeline never reports) "other".
func (m *Metrics) protocolLabel(protocol string) string {
	if protocol == "" {
		return LabelUnknown
	}
	if p, ok := m.protocols.get(protocol, sameLabel); ok {
		return p
	}
	return LabelOther
}

// outcomeLabel keeps the result label within check.Outcomes: anything else is an error.
func outcomeLabel(o check.Outcome) check.Outcome {
	switch o {
	case check.OutcomeOK, check.OutcomeSpoolDown, check.OutcomeUpstreamFail,
		check.OutcomeTimeout, check.OutcomeRefused, check.OutcomeError:
		return o
	}
	return check.OutcomeError
}

// unixSeconds is t as Unix seconds. Not via UnixNano, which overflows int64 after the year 2262
// (a spool mark's expiration is whatever hadown was given).
func unixSeconds(t time.Time) float64 { return float64(t.Unix()) + float64(t.Nanosecond())/1e9 }
