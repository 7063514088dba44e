package check

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hacheck/hacheck/spool"
)

// Request is one check request as it arrives, before validation: the URL's segments, the query
// string and the request headers.
type Request struct {
	Protocol string
	Service  string
	Port     string // the URL's decimal port text
	Query    string // everything after /<protocol>/<service>/<port>/, may contain slashes
	RawQuery string
	Host     string      // the request's Host ("" when it had none); forwarded when "Host" is copied
	Header   http.Header // as net/http parsed it: canonical keys
	NoCache  bool        // Pragma: no-cache
	Start    time.Time   // when the request arrived (time.Now); zero means now
}

// CacheResult says how the cache served a check; empty when no check was due (invalid request,
// spool gate).
type CacheResult string

const (
	CacheHit       CacheResult = "hit"       // a fresh cached result
	CacheMiss      CacheResult = "miss"      // this request ran the upstream check
	CacheCoalesced CacheResult = "coalesced" // waited for an upstream check another request started
	CacheBypass    CacheResult = "bypass"    // Pragma: no-cache ran a fresh check
)

// CacheResults lists every CacheResult, for pre-initialising metrics.
var CacheResults = []CacheResult{CacheHit, CacheMiss, CacheCoalesced, CacheBypass}

// Answer is the pipeline's reply to a Request.
type Answer struct {
	Code    int
	Body    string
	Outcome Outcome
	Cache   CacheResult
	// Protocol and Service are the request's, or "" when they were invalid: safe to use as
	// label values only once bounded.
	Protocol string
	Service  string
	Port     int // the effective port (after X-Haproxy-Server-State)
	// UnreadableMark is set when the spool gate answered from a mark that exists but cannot be
	// read or parsed (counted as down): the operator must hear of it.
	UnreadableMark *spool.Mark
	// NeedsContentType is set when the body would not be sniffed as plain text (an upstream's
	// HTML page, say): the server must then label it text/plain itself. Worked out once per
	// upstream result, when it is cached.
	NeedsContentType bool
	// Changed is set on the one answer whose upstream check turned this check (protocol,
	// service, port, query, ...) from healthy to not or back, or found it unhealthy first:
	// the moment worth a log line.
	Changed bool
	// Memo is the memo of the cache entry that answered, for what the caller derives from
	// the request's service and keeps for the next request (the metrics' series); nil when no
	// cache entry answered (spool gate, uncached protocols, errors, a full cache).
	Memo *Memo
}

// Observer is told about upstream checks as they run; metrics implement it. Methods must be
// cheap and safe for concurrent use.
type Observer interface {
	CheckStarted(protocol string)
	CheckFinished(protocol string, outcome Outcome, elapsed time.Duration)
	CacheServed(protocol string, result CacheResult)
}

// Settings are the reloadable parts of the pipeline.
type Settings struct {
	CacheTTL      time.Duration
	CheckTimeout  time.Duration
	HeadersToCopy []string // header names forwarded to checks and part of the cache key
	Checkers      Registry
}

// Pipeline is the one path every check request takes: validate, apply HAProxy's send-state
// port, consult the spool (never cached), then run the protocol's checker through the cache.
type Pipeline struct {
	spool    *spool.Store
	cache    *Cache
	observer Observer
	settings atomic.Pointer[Settings]
}

// NewPipeline builds a pipeline over store. observer may be nil.
func NewPipeline(store *spool.Store, settings Settings, observer Observer) *Pipeline {
	if observer == nil {
		observer = nopObserver{}
	}
	p := &Pipeline{spool: store, cache: NewCache(), observer: observer}
	p.Configure(settings)
	return p
}

// Configure swaps in new settings; requests already running finish with the old ones.
func (p *Pipeline) Configure(s Settings) {
	canon := make([]string, len(s.HeadersToCopy))
	for i, h := range s.HeadersToCopy {
		canon[i] = http.CanonicalHeaderKey(h)
	}
	s.HeadersToCopy = canon
	p.settings.Store(&s)
}

// Cache is the pipeline's result cache, for /status.
func (p *Pipeline) Cache() *Cache { return p.cache }

// Protocols is the registry in use, for routing.
func (p *Pipeline) Protocols() Registry { return p.settings.Load().Checkers }

// ServerStateHeader is the header HAProxy's `http-check send-state` adds.
const ServerStateHeader = "X-Haproxy-Server-State"

// Answer runs one check request through the pipeline.
func (p *Pipeline) Answer(req Request) Answer {
	s := p.settings.Load()
	checker, ok := s.Checkers[req.Protocol]
	if !ok {
		return Answer{Code: http.StatusNotFound, Body: fmt.Sprintf("unknown protocol %q", truncate(req.Protocol, 40)), Outcome: OutcomeError}
	}
	if err := spool.ValidateName(req.Service); err != nil {
		return Answer{Code: http.StatusBadRequest, Body: err.Error(), Outcome: OutcomeError, Protocol: req.Protocol}
	}
	// The URL's port may be 0 for every protocol: SmartStack writes every backend as
	// /http/<service>/0/<path> with send-state, and the header's port replaces it. Only the
	// effective port must be 1-65535 for a protocol that connects to one.
	port, err := ParsePort(req.Port, false)
	if err != nil {
		return Answer{Code: http.StatusBadRequest, Body: err.Error(), Outcome: OutcomeError, Protocol: req.Protocol, Service: req.Service}
	}
	if len(req.Query)+len(req.RawQuery) > MaxQueryLen {
		return Answer{Code: http.StatusRequestURITooLong, Body: fmt.Sprintf("query longer than %d bytes", MaxQueryLen),
			Outcome: OutcomeError, Protocol: req.Protocol, Service: req.Service}
	}
	if values := req.Header[ServerStateHeader]; len(values) > 0 {
		if statePort, ok := ParseServerStatePort(values[0]); ok {
			port = statePort
		}
	}
	if port == 0 && NeedsPort(checker) {
		return Answer{Code: http.StatusBadRequest, Outcome: OutcomeError, Protocol: req.Protocol, Service: req.Service,
			Body: "invalid port 0: must be 1-65535, or 0 with the real port in " + ServerStateHeader}
	}
	answer := Answer{Protocol: req.Protocol, Service: req.Service, Port: port}
	now := req.Start
	if now.IsZero() {
		now = time.Now()
	}

	if mark, down := p.spool.StatusAt(req.Service, port, now); down {
		if mark.Drain && DrainAnswers404(checker) {
			answer.Code = http.StatusNotFound
			answer.Body = mark.DrainBody(req.Service)
		} else {
			answer.Code = http.StatusServiceUnavailable
			answer.Body = mark.DownBody(req.Service)
		}
		answer.Outcome = OutcomeSpoolDown
		if mark.Err != nil {
			unreadable := mark // a copy: taking mark's own address would allocate on every call
			answer.UnreadableMark = &unreadable
		}
		return answer
	}
	if uncached, ok := checker.(Uncached); ok {
		result, err := uncached.Check(context.Background(), Target{Service: req.Service, Port: port})
		if err != nil {
			result = Result{Code: http.StatusServiceUnavailable, Message: err.Error(), Outcome: OutcomeError}
		}
		answer.Code, answer.Body, answer.Outcome = result.Code, result.Message, result.Outcome
		return answer.validCode()
	}

	// The key lives in a stack buffer: a cache hit, the common case by far, then allocates
	// nothing (map lookups with string(bytes) do not copy).
	var keyBuf [256]byte
	key := appendCacheKey(keyBuf[:0], req, port, s.HeadersToCopy)
	result, cacheResult, changed, memo := p.cache.Get(key, now, s.CacheTTL, req.NoCache, func() Result {
		target := Target{Service: req.Service, Port: port, Query: req.Query, RawQuery: req.RawQuery,
			Header: forwardedHeaders(req, s.HeadersToCopy)}
		result := p.runCheck(checker, req.Protocol, target, s.CheckTimeout)
		result.needsContentType = result.Message != "" &&
			!strings.HasPrefix(http.DetectContentType([]byte(result.Message[:min(len(result.Message), sniffLen)])), "text/plain")
		return result
	})
	p.observer.CacheServed(req.Protocol, cacheResult)
	answer.Code, answer.Body, answer.Outcome, answer.Cache, answer.Changed = result.Code, result.Message, result.Outcome, cacheResult, changed
	answer.NeedsContentType = result.needsContentType
	answer.Memo = memo
	return answer.validCode()
}

// validCode makes a code that is not an HTTP status (100–599) a 503, a "down" every client
// reads alike: net/http panics on a code below 100, and one above 599 is no status at all.
func (a Answer) validCode() Answer {
	if a.Code < 100 || a.Code > 599 {
		a.Code = http.StatusServiceUnavailable
	}
	return a
}

// headerValues are the values of one canonical header name, Host included.
func headerValues(req Request, name string) []string {
	if name == "Host" {
		if req.Host == "" {
			return nil
		}
		return []string{req.Host}
	}
	return req.Header[name]
}

// appendCacheKey identifies a check: everything that can change what the upstream answers.
// Fields are NUL-separated (NUL cannot occur in any of them); header values are \x01-separated.
func appendCacheKey(key []byte, req Request, port int, headers []string) []byte {
	key = append(key, req.Protocol...)
	key = append(key, 0)
	key = append(key, req.Service...)
	key = append(key, 0)
	key = strconv.AppendInt(key, int64(port), 10)
	key = append(key, 0)
	key = append(key, req.Query...)
	key = append(key, 0)
	key = append(key, req.RawQuery...)
	for _, name := range headers {
		key = append(key, 0)
		if name == "Host" {
			key = append(key, req.Host...)
			continue
		}
		for _, v := range req.Header[name] {
			key = append(key, v...)
			key = append(key, 1)
		}
	}
	return key
}

func forwardedHeaders(req Request, names []string) http.Header {
	var out http.Header
	for _, name := range names {
		if values := headerValues(req, name); len(values) > 0 {
			if out == nil {
				out = make(http.Header, len(names))
			}
			out[name] = values
		}
	}
	return out
}

// runCheck runs one upstream check under its own deadline. The context is not the requester's:
// the result is shared with every request coalesced onto it, so one client hanging up must not
// cancel the others' answer.
func (p *Pipeline) runCheck(checker Checker, protocol string, target Target, timeout time.Duration) (result Result) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	p.observer.CheckStarted(protocol)
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			result = Result{Code: http.StatusServiceUnavailable, Message: fmt.Sprintf("%s check failed: internal error: %v", protocol, r), Outcome: OutcomeError}
		}
		p.observer.CheckFinished(protocol, result.Outcome, time.Since(start))
	}()
	result, err := checker.Check(ctx, target)
	if err != nil {
		result = Result{Code: http.StatusServiceUnavailable, Message: fmt.Sprintf("%s check could not run: %v", protocol, err), Outcome: OutcomeError}
	}
	if result.Outcome == "" {
		result.Outcome = OutcomeError
	}
	return result
}

// sniffLen is how much of a body http.DetectContentType looks at: copying more for it would
// only make garbage on every check.
const sniffLen = 512

// MaxQueryLen bounds a check's path and query string together. Health-check URLs are short;
// long ones would only let a client fill the cache with big keys.
const MaxQueryLen = 1024

// ParsePort accepts plain decimal digits only ("+80", " 80", "0x50", "-0" are not ports):
// 0–65535, or 1–65535 when network is set.
func ParsePort(text string, network bool) (int, error) {
	if text == "" || len(text) > 5 || !allDigits(text) {
		return 0, fmt.Errorf("invalid port %q: must be a decimal number", truncate(text, 20))
	}
	port, _ := strconv.Atoi(text)
	if port > 65535 || (network && port == 0) {
		lowest := 0
		if network {
			lowest = 1
		}
		return 0, fmt.Errorf("invalid port %d: must be %d-65535", port, lowest)
	}
	return port, nil
}

// allDigits says whether s is all ASCII digits; strings.TrimLeft with a cutset builds a set on
// every call, and this runs on every check request.
func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// ParseServerStatePort returns the port=N field of an X-Haproxy-Server-State header
// ("UP 2/3; address=127.0.0.1; port=8080; name=be/srv; ..."); ok is false when there is no
// valid one, in which case the URL's port stands.
func ParseServerStatePort(header string) (port int, ok bool) {
	for field := range strings.SplitSeq(header, ";") {
		name, value, found := strings.Cut(strings.TrimSpace(field), "=")
		if !found || !strings.EqualFold(strings.TrimSpace(name), "port") {
			continue
		}
		p, err := ParsePort(strings.TrimSpace(value), true)
		if err != nil {
			return 0, false
		}
		return p, true
	}
	return 0, false
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

type nopObserver struct{}

func (nopObserver) CheckStarted(string)                          {}
func (nopObserver) CheckFinished(string, Outcome, time.Duration) {}
func (nopObserver) CacheServed(string, CacheResult)              {}
