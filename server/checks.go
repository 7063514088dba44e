package server

import (
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hacheck/hacheck/check"
	"github.com/hacheck/hacheck/lb"
	"github.com/hacheck/hacheck/spool"
)

// handleCheck answers a check request, then counts it: metrics, /recent and /status/count,
// and the log.
func (s *Server) handleCheck(w http.ResponseWriter, r *http.Request, protocol, rest string) {
	start := time.Now()
	source := remoteAddr(r)
	if answer, service, ok := s.answerCheck(w, r, protocol, rest, source, start); ok {
		s.recordCheck(r, protocol, service, answer, source, start)
	}
}

// answerCheck writes the pipeline's answer to a check request, or 403 to a client outside
// check_allowed_cidrs; false for a request that is not a check (a method other than GET or
// HEAD), which is answered and not counted.
func (s *Server) answerCheck(w http.ResponseWriter, r *http.Request, protocol, rest string, source netip.Addr, start time.Time) (answer check.Answer, service string, ok bool) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", s.allowOnCheckPath(r, protocol))
		http.Error(w, "method not allowed: checks are GET", http.StatusMethodNotAllowed)
		return answer, "", false
	}
	if !addrIn(source, s.cfg.Load().CheckAllowedCIDRs) {
		// Counted as an error of the protocol (when it is one), under no service: the
		// service name is the refused client's to choose.
		answer = check.Answer{Code: http.StatusForbidden, Outcome: check.OutcomeError,
			Body: "forbidden: client " + source.String() + " is not in check_allowed_cidrs"}
		if _, known := s.pipeline.Protocols()[protocol]; known {
			answer.Protocol = protocol
		}
		http.Error(w, answer.Body, answer.Code)
		return answer, "", true
	}
	service, rest, _ = strings.Cut(rest, "/")
	port, query, _ := strings.Cut(rest, "/")
	answer = s.pipeline.Answer(check.Request{
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
	return answer, service, true
}

// recordCheck counts an answered check: its metrics, its place in /recent and /status/count,
// and the log lines it calls for.
func (s *Server) recordCheck(r *http.Request, protocol, service string, answer check.Answer, source netip.Addr, start time.Time) {
	// time.Since reads only the monotonic clock; the end for /recent is derived from it.
	elapsed := time.Since(start)
	labels := s.metrics.ObserveAnswer(answer, source, elapsed)
	if answer.Service != "" {
		s.metrics.Seen(labels, answer.Code, source, start.Add(elapsed))
	}
	// What the load balancer holds of this server; the header's port already chose answer.Port,
	// and a request the pipeline refused (bad service) has no service to keep it under.
	if values := r.Header[lb.Header]; len(values) > 0 && answer.Service != "" {
		s.lb.Record(answer.Service, answer.Port, values[0], answer.Code, source, start)
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

func truncateRunes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}
