// Package server is hacheck's HTTP side: the check route every HAProxy polls (checks.go), the
// table of every other endpoint (routes.go): the status, recent and count endpoints
// (status.go), metrics, the remote spool API (spoolapi.go), what the load balancers see (lb.go);
// the listeners they are served on (serve.go, with the connection wrappers in package
// listener) and the process around them: startup, reload and shutdown (run.go), logging
// (log.go).
package server

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/hacheck/hacheck/check"
	"github.com/hacheck/hacheck/config"
	"github.com/hacheck/hacheck/lb"
	"github.com/hacheck/hacheck/metrics"
	"github.com/hacheck/hacheck/server/listener"
	"github.com/hacheck/hacheck/spool"
)

// Limits on what clients may send: HAProxy's check requests are a few hundred bytes.
const (
	maxHeaderBytes    = 8 << 10
	maxFormBytes      = 16 << 10
	readHeaderTimeout = 5 * time.Second
	idleTimeout       = 60 * time.Second
)

// Server answers hacheck's HTTP API. It is safe for concurrent use; Reload swaps its
// configuration while requests run.
type Server struct {
	pipeline    *check.Pipeline
	metrics     *metrics.Metrics
	lb          *lb.Tracker
	agentPort   int // the agent-check listener's port; 0 when there is none
	store       *spool.Store
	changes     *spool.ChangeWatcher // nil: changes by other writers are not audited
	version     string
	started     time.Time
	log         atomic.Pointer[zerolog.Logger]
	verbose     bool
	cfg         atomic.Pointer[config.Config]
	mux         *http.ServeMux
	roots       atomic.Pointer[map[string]pathRoot] // ServeHTTP's one lookup: see rootsFor
	warnedMarks sync.Map                            // mark name + error already logged by warnUnreadable
	warnedCount atomic.Int64
	timeouts    timeouts
	// lbTrust is how many reports over how long make a load balancer count; zero: the
	// tracker's own rule. Tests lower it.
	lbTrust lb.Options
}

// timeouts bound how long slow or idle clients hold a connection; tests shorten them.
type timeouts struct {
	readHeader, read, write, idle time.Duration
}

var defaultTimeouts = timeouts{
	readHeader: readHeaderTimeout,
	read:       readHeaderTimeout + 5*time.Second,
	// From the largest check_timeout a reload may set, not the current one: the server
	// outlives reloads, and a check still running must be able to answer.
	write: config.MaxCheckTimeout + 10*time.Second,
	idle:  idleTimeout,
}

// Options are what New needs besides the configuration.
type Options struct {
	Store *spool.Store
	// Changes, when set, is the spool's change watcher; the server's own changes go through it
	// (see ownChange).
	Changes *spool.ChangeWatcher
	Version string
	Logger  zerolog.Logger
	Verbose bool // log one line per request
}

// New builds a server for cfg. Every HTTP endpoint but the checks is served by the mux, from the
// route table (routes.go); check paths are routed by ServeHTTP.
func New(cfg config.Config, opts Options) *Server {
	s := &Server{
		store:    opts.Store,
		changes:  opts.Changes,
		version:  opts.Version,
		started:  time.Now(),
		verbose:  opts.Verbose,
		timeouts: defaultTimeouts,
	}
	s.log.Store(&opts.Logger)
	mopts := metricsOptions(cfg)
	mopts.ErrorLog = metricsErrorLog{s}
	s.metrics = metrics.New(opts.Store, opts.Version, mopts)
	s.pipeline = check.NewPipeline(opts.Store, pipelineSettings(cfg, opts.Version), s.metrics)
	s.lb = lb.NewTracker(s.lbOptions(cfg))
	s.metrics.Registry().MustRegister(lb.NewCollector(s.lb))
	s.cfg.Store(&cfg)

	s.mux = s.newMux()
	s.roots.Store(rootsFor(s.pipeline.Protocols()))
	return s
}

// pipelineSettings is what the check pipeline takes from the configuration, the checkers'
// check.Options among it; New and Apply both build it here.
func pipelineSettings(cfg config.Config, version string) check.Settings {
	return check.Settings{
		CacheTTL:      time.Duration(cfg.CacheTime),
		CheckTimeout:  time.Duration(cfg.CheckTimeout),
		HeadersToCopy: cfg.HTTPHeadersToCopy,
		Checkers: check.NewRegistry(check.Options{
			Version:           version,
			ServiceNameHeader: string(cfg.ServiceNameHeader),
			MySQLUsername:     string(cfg.MySQLUsername),
			MySQLPassword:     string(cfg.MySQLPassword),
			PostgresUsername:  string(cfg.PostgresUsername),
			PostgresPassword:  string(cfg.PostgresPassword),
			PostgresDatabase:  string(cfg.PostgresDatabase),
		}),
	}
}

// metricsOptions is what the metrics take from the configuration.
func metricsOptions(cfg config.Config) metrics.Options {
	return metrics.Options{MaxServices: int(cfg.MaxServices), MaxSources: int(cfg.MaxSourceIPs), SourceNetworks: cfg.SourceNetworks}
}

func (s *Server) logger() *zerolog.Logger { return s.log.Load() }

// metricsErrorLog sends what goes wrong gathering or serving /metrics (a failing collector, a
// scraper gone mid-answer) to the server's log, the one log_path names, whichever logger a
// reload has set since.
type metricsErrorLog struct{ s *Server }

// Println implements promhttp.Logger.
func (l metricsErrorLog) Println(v ...any) {
	l.s.logger().Error().Msg(strings.TrimSuffix(fmt.Sprintln(v...), "\n"))
}

// Pipeline is the server's check pipeline.
func (s *Server) Pipeline() *check.Pipeline { return s.pipeline }

// Apply makes cfg the running configuration: cache, timeouts, checkers, label caps and remote
// spool policy take effect for the next request. Listeners and the log destination are not
// changed here.
func (s *Server) Apply(cfg config.Config) {
	s.pipeline.Configure(pipelineSettings(cfg, s.version))
	s.roots.Store(rootsFor(s.pipeline.Protocols()))
	s.metrics.SetOptions(metricsOptions(cfg))
	s.lb.SetOptions(s.lbOptions(cfg))
	s.cfg.Store(&cfg)
}

// SetLogger replaces the logger, e.g. after a reload changed log_path.
func (s *Server) SetLogger(l zerolog.Logger) { s.log.Store(&l) }

// ServeHTTP routes check requests straight to the pipeline and everything else to the mux.
// Check paths bypass ServeMux on purpose: it would redirect any path that is not in canonical
// form (a double slash in the query, a "..") with a 301, which HAProxy counts as a failed check.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Host == listener.InjectedHost {
		r.Host = ""
	}
	path := r.URL.Path
	if len(path) > 1 {
		protocol, rest, _ := strings.Cut(path[1:], "/")
		root := (*s.roots.Load())[protocol]
		if root.protocol && (!root.routed || !routedMethod(root.methods, r.Method)) {
			s.handleCheck(w, r, protocol, rest)
			return
		}
		if !root.routed && strings.Count(path, "/") >= 3 {
			// Looks like a check of a protocol we do not have: 404 through the pipeline, so it
			// is counted like every other check request.
			s.handleCheck(w, r, protocol, rest)
			return
		}
	}
	s.mux.ServeHTTP(w, r)
}
