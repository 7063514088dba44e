// Package check runs health checks of local services: one Checker per protocol, registered in
// one Registry, and the Pipeline every check request passes (validation, spool gate, cache).
package check

import (
	"context"
	"net/http"
	"sort"
)

// Target is what a check is aimed at. Host is never part of it: every check goes to the local
// host, so no request can aim hacheck at another address.
type Target struct {
	Service  string      // validated service name
	Port     int         // 1–65535 for network protocols
	Query    string      // path after /<protocol>/<service>/<port>/, without the leading slash
	RawQuery string      // the check request's query string, without '?'
	Header   http.Header // only the headers configured to be forwarded (http_headers_to_copy)
}

// Outcome is the fixed vocabulary of how a check request ended; it is the `result` label.
type Outcome string

const (
	OutcomeOK           Outcome = "ok"            // the service answered as healthy
	OutcomeSpoolDown    Outcome = "spool_down"    // an operator's mark (down or drain) answered before any check
	OutcomeUpstreamFail Outcome = "upstream_fail" // the service answered, but not healthy
	OutcomeTimeout      Outcome = "timeout"       // the service did not answer within check_timeout
	OutcomeRefused      Outcome = "refused"       // nothing listens on the port
	OutcomeError        Outcome = "error"         // the check could not be carried out (config, internal)
)

// Outcomes lists every Outcome, for pre-initialising metrics and for docs.
var Outcomes = []Outcome{OutcomeOK, OutcomeSpoolDown, OutcomeUpstreamFail, OutcomeTimeout, OutcomeRefused, OutcomeError}

// Result is a finished check. Code is what hacheck answers (the pipeline turns anything outside
// 100–599 into 503); Message becomes the response body.
type Result struct {
	Code    int
	Message string
	Outcome Outcome

	needsContentType bool // set by the pipeline: see Answer.NeedsContentType
}

// Healthy reports whether HAProxy will count the answer as a passing check (2xx).
func (r Result) Healthy() bool { return r.Code >= 200 && r.Code < 300 }

// Checker checks one protocol. A failed check (down service, timeout, refused connection) is a
// Result, never an error: Check returns an error only when it could not carry the check out at
// all, and the pipeline answers that with 503 and outcome "error". Check must return by ctx's
// deadline and must be safe for concurrent use.
type Checker interface {
	Check(ctx context.Context, t Target) (Result, error)
}

// A checker says what it can do by the optional interfaces it implements, never by its
// protocol's name: the pipeline and the server ask the checker, so a protocol is one file and
// one line in NewRegistry.

// Uncached is implemented by checkers whose answer costs nothing (the spool protocol): the
// pipeline calls them directly, without the cache, a deadline or the Observer, since there is
// no upstream check to share, bound or measure.
type Uncached interface {
	Checker
	Uncached()
}

// Portless is implemented by checkers that connect to no port (the spool protocol): port 0 is
// valid in their requests, where every other protocol needs 1-65535.
type Portless interface {
	Checker
	Portless()
}

// DrainsWith404 is implemented by checkers whose clients are HAProxy's HTTP checks: a drain
// mark answers them 404 rather than 503, which `http-check disable-on-404` turns into NOLB for
// an UP server (sessions finish, no new ones). Every other checker's drain mark answers as a
// down mark, the safe side for a client that cannot tell the two apart.
type DrainsWith404 interface {
	Checker
	DrainsWith404()
}

// CheckerFunc adapts a function to Checker.
type CheckerFunc func(ctx context.Context, t Target) (Result, error)

// Check calls f.
func (f CheckerFunc) Check(ctx context.Context, t Target) (Result, error) { return f(ctx, t) }

// Registry maps protocol names (the first URL segment) to their checkers. The server routes by
// it, and a test holds the README's protocol table to it.
type Registry map[string]Checker

// Names returns the registered protocols, sorted.
func (r Registry) Names() []string {
	names := make([]string, 0, len(r))
	for name := range r {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// NeedsPort reports whether c connects to a port, so that port 0 is invalid in its requests.
func NeedsPort(c Checker) bool {
	_, portless := c.(Portless)
	return !portless
}

// DrainAnswers404 reports whether a drain mark answers c's checks 404 (see DrainsWith404).
func DrainAnswers404(c Checker) bool {
	_, ok := c.(DrainsWith404)
	return ok
}
