// Package server is hacheck's HTTP side: the check route every HAProxy polls, the status,
// recent and metrics endpoints, the remote spool API, and the listeners they are served on.
package server

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"

	"github.com/hacheck/hacheck/check"
	"github.com/hacheck/hacheck/metrics"
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
	store       *spool.Store
	version     string
	started     time.Time
	log         atomic.Pointer[zerolog.Logger]
	verbose     bool
	cfg         atomic.Pointer[Config]
	mux         *http.ServeMux
	warnedMarks sync.Map // mark name + error already logged by warnUnreadable
	warnedCount atomic.Int64
	timeouts    timeouts
	// uninstrumented switches metrics off, only so benchmarks can measure what they cost;
	// New never sets it.
	uninstrumented bool
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
	write: maxCheckTimeout + 10*time.Second,
	idle:  idleTimeout,
}

// Options are what New needs besides the configuration.
type Options struct {
	Store   *spool.Store
	Version string
	Logger  zerolog.Logger
	Verbose bool // log one line per request
}

// New builds a server for cfg.
func New(cfg Config, opts Options) *Server {
	s := &Server{
		store:    opts.Store,
		version:  opts.Version,
		started:  time.Now(),
		verbose:  opts.Verbose,
		timeouts: defaultTimeouts,
	}
	s.log.Store(&opts.Logger)
	s.metrics = metrics.New(opts.Store, opts.Version, metricsOptions(cfg))
	s.pipeline = check.NewPipeline(opts.Store, pipelineSettings(cfg, opts.Version), s.metrics)
	s.cfg.Store(&cfg)

	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET /status", s.handleStatus)
	s.mux.HandleFunc("GET /status/count", s.handleStatusCount)
	s.mux.HandleFunc("GET /recent", s.handleRecent)
	s.mux.Handle("GET /metrics", s.metrics.Handler())
	s.mux.HandleFunc("POST /spool/{service}/{port}/status", s.handleSpoolChange)
	return s
}

func pipelineSettings(cfg Config, version string) check.Settings {
	return check.Settings{
		CacheTTL:      cfg.CacheTime,
		CheckTimeout:  cfg.CheckTimeout,
		HeadersToCopy: cfg.HTTPHeadersToCopy,
		Checkers: check.NewRegistry(check.Options{
			Version:           version,
			ServiceNameHeader: cfg.ServiceNameHeader,
			MySQLUsername:     cfg.MySQLUsername,
			MySQLPassword:     cfg.MySQLPassword,
		}),
	}
}

func metricsOptions(cfg Config) metrics.Options {
	return metrics.Options{MaxServices: cfg.MaxServices, MaxSources: cfg.MaxSourceIPs, SourceNetworks: cfg.SourceNetworks}
}

func (s *Server) logger() *zerolog.Logger { return s.log.Load() }

// Pipeline is the server's check pipeline.
func (s *Server) Pipeline() *check.Pipeline { return s.pipeline }

// Apply makes cfg the running configuration: cache, timeouts, checkers, label caps and remote
// spool policy take effect for the next request. Listeners and the log destination are not
// changed here.
func (s *Server) Apply(cfg Config) {
	s.pipeline.Configure(pipelineSettings(cfg, s.version))
	s.metrics.SetOptions(metricsOptions(cfg))
	s.cfg.Store(&cfg)
}

// SetLogger replaces the logger, e.g. after a reload changed log_path.
func (s *Server) SetLogger(l zerolog.Logger) { s.log.Store(&l) }

// ServeHTTP routes check requests straight to the pipeline and everything else to the mux.
// Check paths bypass ServeMux on purpose: it would redirect any path that is not in canonical
// form (a double slash in the query, a "..") with a 301, which HAProxy counts as a failed check.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Host == injectedHost {
		r.Host = ""
	}
	path := r.URL.Path
	if len(path) > 1 {
		protocol, rest, _ := strings.Cut(path[1:], "/")
		if _, known := s.pipelineProtocols()[protocol]; known && (protocol != "spool" || r.Method != http.MethodPost) {
			s.handleCheck(w, r, protocol, rest)
			return
		}
		if _, fixed := fixedRoots[protocol]; !fixed && strings.Count(path, "/") >= 3 {
			// Looks like a check of a protocol we do not have: 404 through the pipeline, so it
			// is counted like every other check request.
			s.handleCheck(w, r, protocol, rest)
			return
		}
	}
	s.mux.ServeHTTP(w, r)
}

// fixedRoots are the first path segments served by the mux.
var fixedRoots = map[string]struct{}{"status": {}, "recent": {}, "metrics": {}, "spool": {}}

func (s *Server) pipelineProtocols() check.Registry { return s.pipeline.Protocols() }

func (s *Server) handleCheck(w http.ResponseWriter, r *http.Request, protocol, rest string) {
	start := time.Now()
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		allow := "GET, HEAD"
		if protocol == "spool" && strings.HasSuffix(r.URL.Path, "/status") {
			allow = "GET, HEAD, POST" // POST /spool/<service>/<port>/status changes the spool
		}
		w.Header().Set("Allow", allow)
		http.Error(w, "method not allowed: checks are GET", http.StatusMethodNotAllowed)
		return
	}
	service, rest, _ := strings.Cut(rest, "/")
	port, query, _ := strings.Cut(rest, "/")
	answer := s.pipeline.Answer(check.Request{
		Protocol: protocol,
		Service:  service,
		Port:     port,
		Query:    query,
		RawQuery: r.URL.RawQuery,
		Host:     r.Host,
		Header:   r.Header,
		NoCache:  isNoCache(r.Header["Pragma"]),
		Start:    start,
	})
	// Bodies come from upstream services too, and an HTML page (say an error page echoing the
	// path) must not be served as HTML on hacheck's port. net/http's sniffing labels every
	// other body text/plain already, and touching the header map costs a copy of it per
	// response, so the label is set only for the bodies that need it (and for HEAD).
	if answer.NeedsContentType || r.Method == http.MethodHead {
		h := w.Header()
		h["Content-Type"] = textPlain
		h["X-Content-Type-Options"] = noSniff
		if r.Method == http.MethodHead {
			// What GET would send: net/http cannot know it without the body.
			h["Content-Length"] = []string{strconv.Itoa(len(answer.Body))}
		}
	}
	w.WriteHeader(answer.Code)
	if r.Method != http.MethodHead {
		io.WriteString(w, answer.Body)
	}
	source := remoteAddr(r)
	// time.Since reads only the monotonic clock; the end for /recent is derived from it.
	elapsed := time.Since(start)
	labels := metrics.RequestLabels{Service: answer.Service}
	if !s.uninstrumented {
		labels = s.metrics.ObserveAnswer(answer, source, elapsed)
	}
	if answer.Service != "" {
		s.metrics.Seen(labels, answer.Code, source, start.Add(elapsed))
	}
	if answer.Changed {
		s.logTransition(answer)
	}
	if answer.UnreadableMark != nil {
		s.warnUnreadable(answer.UnreadableMark)
	}
	if s.verbose {
		s.logger().Debug().Str("protocol", protocol).Str("service", service).Int("port", answer.Port).
			Int("code", answer.Code).Str("result", string(answer.Outcome)).Str("cache", string(answer.Cache)).
			Str("remote", r.RemoteAddr).Dur("elapsed", elapsed).Msg("check")
	}
}

func isNoCache(pragma []string) bool {
	for _, v := range pragma {
		if strings.EqualFold(strings.TrimSpace(v), "no-cache") {
			return true
		}
	}
	return false
}

// Shared, never modified: net/http only reads header values.
var (
	textPlain = []string{"text/plain; charset=utf-8"}
	noSniff   = []string{"nosniff"}
)

// connKey is the context key under which a request finds its connection (a *hostFixConn).
type connKey struct{}

// withConn is http.Server.ConnContext: requests can then find what was worked out once for
// their connection.
func withConn(ctx context.Context, c net.Conn) context.Context {
	if fixed, ok := c.(*hostFixConn); ok {
		return context.WithValue(ctx, connKey{}, fixed)
	}
	return ctx
}

func remoteAddr(r *http.Request) netip.Addr {
	if c, ok := r.Context().Value(connKey{}).(*hostFixConn); ok && c.source.IsValid() {
		return c.source
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

type unreadableMark struct {
	Mark  string `json:"mark"`
	Error string `json:"error"`
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	marks, err := s.store.List()
	status := map[string]any{
		"cache":      s.pipeline.Cache().Stats(),
		"uptime":     time.Since(s.started).Seconds(),
		"version":    s.version,
		"spool_root": s.store.Root(),
		// false means the inotify watch is gone (root removed or moved): checks read the
		// mark files directly, which is correct but slower.
		"spool_watched": s.store.Watching(),
	}
	unreadable := []unreadableMark{}
	for _, m := range marks {
		if m.Err != nil {
			unreadable = append(unreadable, unreadableMark{m.Name(), m.Err.Error()})
		}
	}
	status["marks"] = len(marks)
	status["unreadable_marks"] = unreadable
	if err != nil {
		status["spool_error"] = err.Error()
	}
	writeJSON(w, http.StatusOK, status)
}

func (s *Server) handleStatusCount(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"service_access_counts": s.metrics.SourceCounts()})
}

// maxRecentThreshold keeps threshold arithmetic far from overflow: ten years.
const maxRecentThreshold = 10 * 365 * 24 * 3600

func (s *Server) handleRecent(w http.ResponseWriter, r *http.Request) {
	threshold := 600
	if text := r.URL.Query().Get("threshold"); text != "" {
		n, err := strconv.Atoi(text)
		if err != nil || n < 0 || n > maxRecentThreshold {
			http.Error(w, fmt.Sprintf("threshold must be a whole number of seconds up to %d, got %q", maxRecentThreshold, text), http.StatusBadRequest)
			return
		}
		threshold = n
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"seen_services":     recentPairs(s.metrics.Recent(time.Now().Add(-time.Duration(threshold) * time.Second))),
		"threshold_seconds": threshold,
	})
}

// handleSpoolChange is POST /spool/<service>/<port>/status: the remote equivalent of
// hadown/haup, off unless allow_remote_spool_changes, and then only from the allowed networks
// and with the bearer token when one is configured.
func (s *Server) handleSpoolChange(w http.ResponseWriter, r *http.Request) {
	cfg := s.cfg.Load()
	source := remoteAddr(r)
	log := s.logger().With().Str("remote", r.RemoteAddr).Str("path", r.URL.Path).Logger()
	if !cfg.AllowRemoteSpoolChanges {
		http.Error(w, "remote spool changes are disabled (allow_remote_spool_changes)", http.StatusForbidden)
		return
	}
	if !addrIn(source, cfg.RemoteSpoolAllowedCIDRs) {
		log.Warn().Msg("remote spool change refused: source not in remote_spool_allowed_cidrs")
		http.Error(w, "source address not allowed to change the spool", http.StatusForbidden)
		return
	}
	if cfg.RemoteSpoolToken != "" {
		auth := r.Header.Get("Authorization")
		token, ok := strings.CutPrefix(auth, "Bearer ")
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="hacheck"`)
			http.Error(w, "a bearer token is required", http.StatusUnauthorized)
			return
		}
		if subtle.ConstantTimeCompare([]byte(token), []byte(cfg.RemoteSpoolToken)) != 1 {
			log.Warn().Msg("remote spool change refused: wrong token")
			http.Error(w, "wrong token", http.StatusForbidden)
			return
		}
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form: "+oneLine(err.Error()), http.StatusBadRequest)
		return
	}
	service := r.PathValue("service")
	port, err := check.ParsePort(r.PathValue("port"), false)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var change func() (any, error)
	switch status := r.PostForm.Get("status"); status {
	case "up":
		change = func() (any, error) {
			removed, err := s.store.Up(service, port)
			return map[string]any{"service": service, "port": port, "status": "up", "removed": removed}, err
		}
	case "down":
		expiration, err1 := formTime(r.PostForm.Get("expiration"))
		creation, err2 := formTime(r.PostForm.Get("creation"))
		if err := errors.Join(err1, err2); err != nil {
			http.Error(w, oneLine(err.Error()), http.StatusBadRequest)
			return
		}
		reason := r.PostForm.Get("reason")
		change = func() (any, error) {
			m, err := s.store.DownSince(service, port, reason, expiration, creation)
			return map[string]any{"service": service, "port": port, "status": "down", "reason": m.Reason,
				"creation": m.Creation.Unix(), "expiration": unixOrNil(m.Expiration)}, err
		}
	default:
		http.Error(w, fmt.Sprintf("status must be up or down, got %q", status), http.StatusBadRequest)
		return
	}
	result, err := change()
	if err != nil {
		code := http.StatusBadRequest
		var access *spool.AccessError
		if errors.As(err, &access) {
			code = http.StatusInternalServerError
		}
		log.Warn().Err(err).Msg("remote spool change failed")
		http.Error(w, oneLine(err.Error()), code)
		return
	}
	log.Info().Str("service", service).Int("port", port).Str("status", r.PostForm.Get("status")).
		Str("reason", r.PostForm.Get("reason")).Bool("token", cfg.RemoteSpoolToken != "").Msg("remote spool change")
	writeJSON(w, http.StatusOK, result)
}

func formTime(text string) (time.Time, error) {
	if text == "" || text == "null" {
		return time.Time{}, nil
	}
	sec, err := strconv.ParseFloat(text, 64)
	if err != nil || sec <= 0 || sec > 1<<40 {
		return time.Time{}, fmt.Errorf("%q is not a unix time", text)
	}
	return time.Unix(0, int64(sec*1e9)), nil
}

func unixOrNil(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.Unix()
}

// addrIn ignores addr's zone: a link-local client arrives zoned (fe80::1%eth0), prefixes have
// no zones, and Prefix.Contains is false for every zoned address. An IPv4 client on an IPv6
// socket is matched as IPv4.
func addrIn(addr netip.Addr, prefixes []netip.Prefix) bool {
	addr = addr.Unmap().WithZone("")
	for _, p := range prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// maxWarnedMarks bounds the memory of which unreadable marks were already logged.
const maxWarnedMarks = 1000

// warnUnreadable logs, once per mark and error, that a mark counts as down only because it
// cannot be read or parsed (fail closed). /status and hacheck_spool_marks_unreadable keep
// saying it for as long as it lasts.
func (s *Server) warnUnreadable(m *spool.Mark) {
	key := m.Name() + "\x00" + m.Err.Error()
	if _, seen := s.warnedMarks.Load(key); seen || s.warnedCount.Load() >= maxWarnedMarks {
		return
	}
	if _, loaded := s.warnedMarks.LoadOrStore(key, struct{}{}); loaded {
		return
	}
	s.warnedCount.Add(1)
	s.logger().Warn().Str("mark", m.Name()).Err(m.Err).Msg("unreadable mark counts as down")
}

// logTransition says, once per change, that a check turned healthy or unhealthy: at info, not
// per check.
func (s *Server) logTransition(a check.Answer) {
	state := "UP"
	if a.Code < 200 || a.Code >= 300 {
		state = "DOWN"
	}
	s.logger().Info().Str("service", a.Service).Int("port", a.Port).Str("protocol", a.Protocol).
		Int("code", a.Code).Str("result", string(a.Outcome)).Str("body", truncateRunes(a.Body, 200)).
		Msgf("%s is %s", a.Service, state)
}

// recentPairs is /recent's [name, entry] pairs, the shape the Python hacheck's /recent had.
func recentPairs(services []metrics.RecentService) [][2]any {
	out := make([][2]any, len(services))
	for i, svc := range services {
		out[i] = [2]any{svc.Service, seenEntry{svc.Code, svc.RemoteIP, float64(svc.Time.Unix())}}
	}
	return out
}

type seenEntry struct {
	Code     int     `json:"code"`
	RemoteIP string  `json:"remote_ip"`
	TS       float64 `json:"ts"`
}

func truncateRunes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// Listen opens one listener per port on bind ("" = every address, IPv4 and IPv6), wrapped so
// that Host-less HTTP/1.1 check requests are answered.
func Listen(bind string, ports []int) ([]net.Listener, error) {
	var listeners []net.Listener
	for _, port := range ports {
		addr := net.JoinHostPort(bind, strconv.Itoa(port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			for _, open := range listeners {
				open.Close()
			}
			return nil, fmt.Errorf("listen on %s: %w", addr, err)
		}
		listeners = append(listeners, Wrap(l))
	}
	return listeners, nil
}

// Wrap applies the Host-less HTTP/1.1 fix and the lazy deadlines (deadline.go) to a listener
// (Listen does it already).
func Wrap(l net.Listener) net.Listener {
	return hostFixListener{Listener: l, maxHeaderBytes: maxHeaderBytes, reaper: newDeadlineReaper(defaultReaperTick)}
}

// httpServer is the net/http server for s, with every limit set: header size, slow clients,
// idle keep-alive connections, and a write deadline past the longest possible check.
func (s *Server) httpServer() *http.Server {
	return &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.timeouts.readHeader,
		ReadTimeout:       s.timeouts.read,
		WriteTimeout:      s.timeouts.write,
		IdleTimeout:       s.timeouts.idle,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          newStdLogger(s.logger),
		ConnContext:       withConn,
	}
}

// Serve serves on every listener until ctx is cancelled, then shuts down gracefully: no new
// connections, running checks finish (bounded by shutdownGrace).
func (s *Server) Serve(ctx context.Context, listeners []net.Listener, shutdownGrace time.Duration) error {
	srv := s.httpServer()
	errs := make(chan error, len(listeners))
	for _, l := range listeners {
		go func() { errs <- srv.Serve(l) }()
	}
	select {
	case err := <-errs:
		srv.Close()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// newStdLogger routes net/http's own complaints (TLS handshakes, accept errors, panics in
// handlers) into the structured log.
func newStdLogger(logger func() *zerolog.Logger) *log.Logger {
	return log.New(stdLogWriter{logger}, "", 0)
}

type stdLogWriter struct{ logger func() *zerolog.Logger }

func (w stdLogWriter) Write(p []byte) (int, error) {
	w.logger().Warn().Str("source", "net/http").Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}
