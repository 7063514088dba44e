package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/hacheck/hacheck/metrics"
	"github.com/hacheck/hacheck/spool"
)

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
	status["marks_by_kind"] = marksByKind(marks)
	status["unreadable_marks"] = unreadable
	status["old_marks"] = oldMarks(marks, time.Duration(s.cfg.Load().MaxMarkAge), time.Now())
	if err != nil {
		status["spool_error"] = err.Error()
	}
	writeJSON(w, http.StatusOK, status)
}

// marksByKind counts the marks that hold services down, those that drain them and those that
// only set a weight (and hold nothing down).
func marksByKind(marks []spool.Mark) map[spool.Kind]int {
	kinds := map[spool.Kind]int{spool.KindDown: 0, spool.KindDrain: 0, spool.KindWeight: 0}
	for _, m := range marks {
		kinds[m.Kind()]++
	}
	return kinds
}

// oldMark is a mark without an expiration that has been in place longer than max_mark_age:
// most likely a maintenance someone forgot to end.
type oldMark struct {
	Mark       string  `json:"mark"`
	Reason     string  `json:"reason"`
	Creation   float64 `json:"creation"`
	AgeSeconds float64 `json:"age_seconds"`
}

// oldMarks flags the marks without an expiration older than maxAge (0: none). A mark with an
// expiration ends by itself, and an unreadable one is reported as such already.
func oldMarks(marks []spool.Mark, maxAge time.Duration, now time.Time) []oldMark {
	out := []oldMark{}
	if maxAge <= 0 {
		return out
	}
	for _, m := range marks {
		if m.Err != nil || !m.Expiration.IsZero() || m.Creation.IsZero() {
			continue
		}
		if age := now.Sub(m.Creation); age > maxAge {
			out = append(out, oldMark{m.Name(), m.Reason, float64(m.Creation.UnixNano()) / 1e9, age.Seconds()})
		}
	}
	return out
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
	seen := s.metrics.Recent(time.Now().Add(-time.Duration(threshold) * time.Second))
	if seen == nil {
		seen = []metrics.RecentService{}
	}
	writeJSON(w, http.StatusOK, metrics.RecentAnswer{SeenServices: seen, ThresholdSeconds: threshold})
}
