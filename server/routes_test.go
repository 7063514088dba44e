package server

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hacheck/hacheck/config"
)

// checksCounted is how many requests the server counted as checks in hacheck_requests_total.
func checksCounted(t *testing.T, s *Server) float64 {
	t.Helper()
	families, err := s.metrics.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, f := range families {
		if f.GetName() == "hacheck_requests_total" {
			for _, m := range f.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

var wildcard = regexp.MustCompile(`\{[^}]*\}`)

// Every route of the table reaches its handler, never the check pipeline: with its own path,
// and with any longer path under its first segment (which the mux answers 404), so that a path
// of three or more segments is never counted as a check of a protocol called "lb" or "status".
func TestEveryRouteIsRouted(t *testing.T) {
	s := New(config.Default(), Options{Store: watchedStore(t), Version: "test", Logger: zerolog.Nop()})
	for _, rt := range routes {
		method, pattern, _ := strings.Cut(rt.pattern, " ")
		path := wildcard.ReplaceAllStringFunc(pattern, func(w string) string {
			switch {
			case w == "{$}":
				return ""
			case strings.HasSuffix(w, "...}"):
				return "a/b"
			}
			return "a"
		})
		paths := []string{path}
		if path != "/" { // the root page has no segment for longer paths to be under
			paths = append(paths, strings.TrimSuffix(path, "/")+"/x/y/z")
		}
		for _, p := range paths {
			t.Run(method+" "+p, func(t *testing.T) {
				r := httptest.NewRequest(method, p, strings.NewReader("status=up"))
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				r.RemoteAddr = "127.0.0.1:1234"
				before := checksCounted(t, s)
				s.ServeHTTP(httptest.NewRecorder(), r)
				if after := checksCounted(t, s); after != before {
					t.Fatalf("counted as a check (%v checks before, %v after)", before, after)
				}
				if p == path {
					if _, matched := s.mux.Handler(r); matched != rt.pattern {
						t.Fatalf("the mux routes it to %q", matched)
					}
				}
			})
		}
	}
}

// The routes' first segments are what the table says, and a root shared with a protocol takes
// only its routes' methods from the checks.
func TestRouteRoots(t *testing.T) {
	roots := rootsOf([]route{
		{pattern: "GET /status"}, {pattern: "GET /status/count"},
		{pattern: "POST /spool/{service}/{port}/status"}, {pattern: "/any"},
		{pattern: "GET /{$}"}, {pattern: "GET example.org/host"},
	})
	tests := []struct {
		root, method string
		routed       bool
	}{
		{"status", http.MethodGet, true},
		{"status", http.MethodHead, true},
		{"status", http.MethodPost, false},
		{"spool", http.MethodPost, true},
		{"spool", http.MethodGet, false},
		{"spool", http.MethodHead, false},
		{"any", http.MethodDelete, true},
		{"", http.MethodGet, true},
		{"host", http.MethodGet, true},
		{"http", http.MethodGet, false},
	}
	for _, tt := range tests {
		if got := routedMethod(roots[tt.root], tt.method); got != tt.routed {
			t.Errorf("%s /%s/: routed %v, want %v", tt.method, tt.root, got, tt.routed)
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("a route with a wildcard first segment was accepted")
		}
	}()
	rootsOf([]route{{pattern: "GET /{protocol}/x"}})
}
