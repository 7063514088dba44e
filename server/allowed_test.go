package server

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hacheck/hacheck/config"
)

// check_allowed_cidrs decides who may make check requests: a client outside it gets 403,
// counted under result="error" and no service, and no check runs; inside it, the check runs as
// usual. Addresses are compared as remote_spool_allowed_cidrs compares them: an IPv4-mapped
// IPv6 client is its IPv4 address, a link-local client's zone is ignored.
func TestCheckAllowedCIDRs(t *testing.T) {
	tests := []struct {
		name    string
		cidrs   []string
		remote  string // the client's address as net/http gives it
		allowed bool
	}{
		{"default: any client", nil, "192.0.2.7:40000", true},
		{"default: any IPv6 client", nil, "[2001:db8::7]:40000", true},
		{"allowed", []string{"10.0.0.0/8"}, "10.1.2.3:40000", true},
		{"denied", []string{"10.0.0.0/8"}, "192.0.2.7:40000", false},
		{"IPv4-mapped IPv6, allowed", []string{"10.0.0.0/8"}, "[::ffff:10.1.2.3]:40000", true},
		{"IPv4-mapped IPv6, denied", []string{"10.0.0.0/8"}, "[::ffff:192.0.2.7]:40000", false},
		{"IPv6 denied by an IPv4 list", []string{"10.0.0.0/8"}, "[2001:db8::7]:40000", false},
		{"link-local with zone, allowed", []string{"fe80::/10"}, "[fe80::1%eth0]:40000", true},
		{"link-local with zone, denied", []string{"fd00::/8"}, "[fe80::1%eth0]:40000", false},
		{"a bare address", []string{"192.0.2.7"}, "192.0.2.7:40000", true},
	}
	var hits atomic.Int64
	port, _ := backendPort(t, func(w http.ResponseWriter, r *http.Request) { hits.Add(1) })
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Default()
			if tt.cidrs != nil {
				cfg.CheckAllowedCIDRs = nil
				for _, c := range tt.cidrs {
					p, err := netip.ParsePrefix(c)
					if err != nil {
						p = netip.PrefixFrom(netip.MustParseAddr(c), 32)
					}
					cfg.CheckAllowedCIDRs = append(cfg.CheckAllowedCIDRs, p)
				}
			}
			srv := New(cfg, Options{Store: watchedStore(t), Version: "test"})
			before := hits.Load()
			req := httptest.NewRequest(http.MethodGet, "/http/web/"+port+"/health", nil)
			req.RemoteAddr = tt.remote
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, req)
			checked := hits.Load() - before

			metrics := httptest.NewRecorder()
			srv.ServeHTTP(metrics, httptest.NewRequest(http.MethodGet, "/metrics", nil))
			refusedLine := `hacheck_requests_total{code="403",protocol="http",result="error",service="invalid"} 1`
			if tt.allowed {
				if rec.Code != http.StatusOK || checked != 1 {
					t.Fatalf("client %s: %d %q after %d checks; want the check's 200", tt.remote, rec.Code, rec.Body, checked)
				}
				if strings.Contains(metrics.Body.String(), `code="403"`) {
					t.Errorf("an allowed request counted as a 403")
				}
				return
			}
			if rec.Code != http.StatusForbidden || checked != 0 || !strings.Contains(rec.Body.String(), "check_allowed_cidrs") {
				t.Fatalf("client %s: %d %q after %d checks; want 403 naming check_allowed_cidrs and no check", tt.remote, rec.Code, rec.Body, checked)
			}
			if !strings.Contains(metrics.Body.String(), refusedLine) {
				t.Errorf("/metrics lacks %s", refusedLine)
			}
		})
	}
}

// A reload applies check_allowed_cidrs to the next request, over a real connection.
func TestCheckAllowedCIDRsReload(t *testing.T) {
	port, _ := backendPort(t, func(w http.ResponseWriter, r *http.Request) {})
	ts := startServer(t, func(c *config.Config) { c.CheckAllowedCIDRs = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")} })
	path := "/http/web/" + port + "/health"
	if code, body, _ := ts.get(t, path); code != http.StatusForbidden {
		t.Fatalf("loopback client outside 10.0.0.0/8: %d %q, want 403", code, body)
	}
	cfg := config.Default()
	cfg.CheckAllowedCIDRs = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	ts.Apply(cfg)
	if code, body, _ := ts.get(t, path); code != http.StatusOK {
		t.Fatalf("loopback client inside 127.0.0.0/8: %d %q, want 200", code, body)
	}
}
