package server

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hacheck/hacheck/config"
	"github.com/hacheck/hacheck/lb"
)

func sendState(state, name, node string, port string) string {
	return state + "; address=127.0.0.1; port=" + port + "; name=" + name + "; node=" + node + "; weight=1/2; scur=0/4; qcur=0"
}

// TestLBRecordsEveryCheck: every check request that carries the send-state header is kept,
// whatever answered it (spool, the cache, the spool gate), under the port the header names.
func TestLBRecordsEveryCheck(t *testing.T) {
	ts := startServer(t, nil, trustAtOnce)
	backend, _ := backendPort(t, func(w http.ResponseWriter, r *http.Request) {})
	before := float64(time.Now().UnixNano()) / 1e9
	checks := []struct{ path, header string }{
		{"/spool/web/0/", sendState("UP", "be_app/app1", "lb1", "18080")},
		{"/http/web/" + backend + "/health", sendState("UP 2/3", "be_app/app1", "lb2", backend)},
		{"/http/web/" + backend + "/health", sendState("UP 2/3", "be_app/app1", "lb2", backend)}, // a cache hit
		{"/spool/api/0/", sendState("DOWN", "be_api/a", "lb1", "9000")},
		{"/spool/web/0/", "garbage"},
		{"/spool/-bad-/0/", sendState("UP", "x/y", "lb1", "1")},
	}
	for _, c := range checks {
		ts.get(t, c.path, "X-Haproxy-Server-State", c.header)
	}
	if _, err := ts.store.Down("api", 0, "deploy", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := ts.get(t, "/spool/api/0/", "X-Haproxy-Server-State", sendState("NOLB", "be_api/a", "lb1", "9000")); code != 503 {
		t.Fatalf("api is down but its check answered %d", code)
	}

	code, body, header := ts.get(t, "/lb/web")
	if code != 200 || !strings.HasPrefix(header.Get("Content-Type"), "application/json") {
		t.Fatalf("GET /lb/web: %d %s %q", code, header.Get("Content-Type"), body)
	}
	var snap lb.Snapshot
	if err := json.Unmarshal([]byte(body), &snap); err != nil {
		t.Fatal(err)
	}
	if snap.Service != "web" || snap.WindowSeconds != 30 || snap.Now < before || len(snap.Agents) != 0 || len(snap.Servers) != 2 {
		t.Fatalf("GET /lb/web = %s", body)
	}
	lb1, lb2 := snap.Servers[0], snap.Servers[1]
	if lb1.Node != "lb1" || lb1.Port != 18080 || lb1.Server != "be_app/app1" || lb1.Source != "127.0.0.1" || lb1.State != "UP" ||
		lb1.Counters != "" || lb1.Weight != 1 || lb1.TotalWeight != 2 || lb1.Scur != 0 || lb1.BackendScur != 4 ||
		lb1.LastSeen < before || lb1.LastSeen > snap.Now || lb1.AgeSeconds < 0 {
		t.Errorf("lb1's line: %+v", lb1)
	}
	if lb2.Node != "lb2" || lb2.State != "UP" || lb2.Counters != "2/3" || lb2.Port == 18080 {
		t.Errorf("lb2's line: %+v", lb2)
	}
	_, body, _ = ts.get(t, "/lb/api?port=9000")
	if !strings.Contains(body, `"state":"NOLB"`) {
		t.Errorf("GET /lb/api?port=9000 = %s, want the line from the check the spool gate answered", body)
	}
	_, body, _ = ts.get(t, "/lb/web?port=18080")
	if strings.Count(body, `"node"`) != 1 {
		t.Errorf("GET /lb/web?port=18080 = %s, want lb1's line alone", body)
	}
	_, body, _ = ts.get(t, "/metrics")
	for _, want := range []string{`hacheck_lb_server_state{service="web",state="UP"} 2`, `hacheck_lb_server_state{service="api",state="NOLB"} 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestLBEndpointInput(t *testing.T) {
	ts := startServer(t, nil)
	tests := []struct {
		path string
		code int
		body string
	}{
		{"/lb/nobody", 200, `"servers":[],"agents":[]`},
		{"/lb/web?port=0", 200, `"service":"web"`},
		{"/lb/.hidden", 400, "invalid service name"},
		{"/lb/" + strings.Repeat("a", 200), 400, "invalid service name"},
		{"/lb/web?port=x", 400, "invalid port"},
		{"/lb/web?port=70000", 400, "invalid port"},
		{"/lb/web/extra", 404, ""},
	}
	for _, tt := range tests {
		code, body, _ := ts.get(t, tt.path)
		if code != tt.code || !strings.Contains(body, tt.body) {
			t.Errorf("GET %s = %d %q, want %d with %q", tt.path, code, body, tt.code, tt.body)
		}
	}
}

// trustAtOnce makes every reporter count from its first report, for tests of what a load
// balancer reports rather than of whose word counts.
func trustAtOnce(s *Server) {
	s.lbTrust = lb.Options{MinReports: 1, MinSpan: -1}
	s.lb.SetOptions(s.lbOptions(*s.cfg.Load()))
}

// The caller's side of lb_sources: a client outside it still gets its check answered, but
// what it reports is not kept, however often it checks.
func TestLBSources(t *testing.T) {
	ts := startServer(t, func(c *config.Config) { c.LBSources = config.Prefixes{netip.MustParsePrefix("10.0.0.0/8")} }, trustAtOnce)
	for range 3 {
		if code, _, _ := ts.get(t, "/spool/web/0/", "X-Haproxy-Server-State", sendState("UP", "be/w1", "lb1", "8080")); code != 200 {
			t.Fatalf("a check from outside lb_sources answered %d, want 200", code)
		}
	}
	if _, body, _ := ts.get(t, "/lb/web"); !strings.Contains(body, `"servers":[]`) || !strings.Contains(body, `"unconfirmed":0`) {
		t.Errorf("GET /lb/web = %s, want nothing from 127.0.0.1, outside lb_sources", body)
	}
	cfg := config.Default()
	ts.Apply(cfg) // back to any address
	ts.get(t, "/spool/web/0/", "X-Haproxy-Server-State", sendState("UP", "be/w1", "lb1", "8080"))
	if _, body, _ := ts.get(t, "/lb/web"); !strings.Contains(body, `"node":"lb1"`) {
		t.Errorf("after a reload to any address, GET /lb/web = %s, want lb1's line", body)
	}
}

// The send-state header costs no allocation once its line is known, on the paths HAProxy hits.
func TestSendStateAllocatesNothing(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer backend.Close()
	srv := New(config.Default(), Options{Store: watchedStore(t), Version: "test", Logger: zerolog.Nop()})
	for _, path := range []string{"/spool/web/0/", replacePort("/http/web/P/health", backend)} {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		r.RemoteAddr = "10.0.0.1:12345"
		// The header's port is the backend's: it replaces the URL's, and the check must succeed.
		r.Header.Set(lb.Header, sendState("UP", "be/web1", "lb1", replacePort("P", backend)))
		w := &discardWriter{h: http.Header{}}
		srv.ServeHTTP(w, r)
		if n := testing.AllocsPerRun(200, func() { srv.ServeHTTP(w, r) }); n != 0 {
			t.Errorf("%s: %.1f allocations per request, want 0", path, n)
		}
	}
}

func TestLBFollowsConfig(t *testing.T) {
	ts := startServer(t, func(c *config.Config) {
		c.LBWindow = config.Duration(5 * time.Second)
		c.MinRemainingWeight = 2
	})
	_, body, _ := ts.get(t, "/lb/web")
	if !strings.Contains(body, `"window_seconds":5,`) || !strings.Contains(body, `"min_remaining_weight":2`) {
		t.Errorf("GET /lb/web = %s, want window_seconds 5 and min_remaining_weight 2", body)
	}
	cfg := config.Default()
	ts.Apply(cfg)
	_, body, _ = ts.get(t, "/lb/web")
	if !strings.Contains(body, `"window_seconds":30,`) || !strings.Contains(body, `"min_remaining_weight":0`) {
		t.Errorf("after a reload to the defaults, GET /lb/web = %s", body)
	}
}
