package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hacheck/hacheck/config"
	"github.com/hacheck/hacheck/spool"
)

// watchedStore is a spool in a temporary root, watched as serve watches it.
func watchedStore(tb testing.TB) *spool.Store {
	tb.Helper()
	store := spool.New(tb.TempDir())
	if err := store.Watch(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	return store
}

type testServer struct {
	*Server
	store *spool.Store
	base  string // http://127.0.0.1:port
	addr  string
}

// startServer serves a Server on a real loopback listener (wrapped like production ones) until
// the test ends. tweaks change the Server before it serves.
func startServer(t *testing.T, mutate func(*config.Config), tweaks ...func(*Server)) *testServer {
	t.Helper()
	cfg := config.Default()
	if mutate != nil {
		mutate(&cfg)
	}
	store := watchedStore(t)
	srv := New(cfg, Options{Store: store, Version: "test", Logger: zerolog.Nop()})
	for _, tweak := range tweaks {
		tweak(srv)
	}
	addr, shutdown := serve(t, srv, 10*time.Second)
	t.Cleanup(func() {
		if err := shutdown(); err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return &testServer{Server: srv, store: store, base: "http://" + addr, addr: addr}
}

// serve serves srv on a wrapped loopback listener; shutdown stops it gracefully (within grace)
// and returns what Serve returned. Call shutdown once.
func serve(tb testing.TB, srv *Server, grace time.Duration) (addr string, shutdown func() error) {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, []net.Listener{Wrap(l)}, grace) }()
	return l.Addr().String(), func() error { cancel(); return <-done }
}

func (ts *testServer) get(t *testing.T, path string, header ...string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, ts.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			req.Host = header[i+1] // net/http clients send req.Host, never Header["Host"]
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header
}

// raw sends bytes on a new connection, as HAProxy does, and returns the status line and body.
func (ts *testServer) raw(t *testing.T, request string) (string, string) {
	t.Helper()
	conn, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading response to %q: %v", request, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.Status, string(body)
}

func backendPort(t *testing.T, handler http.HandlerFunc) (string, *httptest.Server) {
	t.Helper()
	b := httptest.NewServer(handler)
	t.Cleanup(b.Close)
	return strconv.Itoa(b.Listener.Addr().(*net.TCPAddr).Port), b
}

func TestHAProxyShapedRequests(t *testing.T) {
	ts := startServer(t, nil)
	tests := []struct {
		name, request, status string
	}{
		{"HTTP/1.0 without Host (HAProxy's default)", "GET /spool/web/0/ HTTP/1.0\r\n\r\n", "200 OK"},
		{"HTTP/1.1 without Host (option httpchk ... HTTP/1.1)", "GET /spool/web/0/ HTTP/1.1\r\nconnection: close\r\n\r\n", "200 OK"},
		{"HTTP/1.1 with Host", "GET /spool/web/0/ HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n", "200 OK"},
		{"lowercase host", "GET /spool/web/0/ HTTP/1.1\r\nhost: lb\r\nconnection: close\r\n\r\n", "200 OK"},
		{"bare LF line ends", "GET /spool/web/0/ HTTP/1.1\nconnection: close\n\n", "200 OK"},
		{"with send-state", "GET /spool/web/0/ HTTP/1.1\r\nx-haproxy-server-state: UP; address=127.0.0.1; port=8080; name=be/s1\r\nconnection: close\r\n\r\n", "200 OK"},
		{"no query at all", "GET /spool/web/0 HTTP/1.0\r\n\r\n", "200 OK"},
		{"double slash in the query is not redirected", "GET /spool/web/0//a/../b HTTP/1.0\r\n\r\n", "200 OK"},
		{"HEAD", "HEAD /spool/web/0/ HTTP/1.0\r\n\r\n", "200 OK"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if status, body := ts.raw(t, tt.request); status != tt.status {
				t.Fatalf("got %s %q, want %s", status, body, tt.status)
			}
		})
	}
}

func TestKeepAliveConnectionServesMany(t *testing.T) {
	ts := startServer(t, nil)
	serveOnOneConnection(t, ts.addr, 5)
}

// serveOnOneConnection sends n spool checks one after another on one keep-alive connection;
// each must be answered 200.
func serveOnOneConnection(t *testing.T, addr string, n int) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	for i := range n {
		fmt.Fprintf(conn, "GET /spool/web%d/0/ HTTP/1.1\r\nHost: x\r\n\r\n", i)
		resp, err := http.ReadResponse(r, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("request %d on one connection: %v %v", i, resp, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

func TestSpoolRoute(t *testing.T) {
	ts := startServer(t, nil)
	if code, body, _ := ts.get(t, "/spool/x/0/"); code != 200 || body != "" {
		t.Fatalf("up: %d %q", code, body)
	}
	ts.store.Down("x", 0, "kernel upgrade", time.Time{})
	code, body, header := ts.get(t, "/spool/x/0/")
	if code != 503 || !strings.HasPrefix(body, "Service x in down state since ") || !strings.HasSuffix(body, ": kernel upgrade") ||
		header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("down: %d %q %v", code, body, header)
	}
	ts.store.Up("x", 0)
	if code, _, _ := ts.get(t, "/spool/x/0/"); code != 200 {
		t.Fatalf("up again: %d", code)
	}
}

func TestHTTPRoutePassesThrough(t *testing.T) {
	var seen *http.Request
	port, _ := backendPort(t, func(w http.ResponseWriter, r *http.Request) {
		seen = r
		if r.URL.Path == "/moved" {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
			return
		}
		w.WriteHeader(http.StatusAccepted)
		w.Write([]byte("accepted " + r.URL.RawQuery))
	})
	ts := startServer(t, func(c *config.Config) { c.ServiceNameHeader = "X-Service-Name" })
	code, body, _ := ts.get(t, "/http/web/"+port+"/status/deep?a=b", "Host", "web.example")
	if code != http.StatusAccepted || body != "accepted a=b" {
		t.Fatalf("got %d %q", code, body)
	}
	if seen.Host != "web.example" || seen.Header.Get("X-Service-Name") != "web" || seen.URL.Path != "/status/deep" ||
		!strings.HasPrefix(seen.Header.Get("User-Agent"), "hacheck/") {
		t.Fatalf("backend saw host %q headers %v path %q", seen.Host, seen.Header, seen.URL.Path)
	}
	if code, _, _ := ts.get(t, "/http/web/"+port+"/moved"); code != http.StatusFound {
		t.Fatalf("redirect: got %d, want 302 passed through", code)
	}
	// HAProxy's Host-less check must not forward an invented Host.
	ts.raw(t, "GET /http/web2/"+port+"/x HTTP/1.1\r\nconnection: close\r\n\r\n")
	if seen.Host != "127.0.0.1:"+port {
		t.Fatalf("Host-less check forwarded Host %q", seen.Host)
	}
}

func TestBadRequests(t *testing.T) {
	ts := startServer(t, nil)
	tests := []struct {
		method, path string
		code         int
		bodyHas      string
	}{
		{"GET", "/gopher/web/80/", 404, "unknown protocol"},
		{"GET", "/nothing-here", 404, ""},
		{"POST", "/", 405, ""},
		{"GET", "/index.html", 404, ""},
		{"GET", "/http/..%2Fetc/80/", 400, "invalid service name"},
		{"GET", "/http/web/80000/", 400, "invalid port"},
		{"GET", "/http/web/abc/", 400, "invalid port"},
		{"GET", "/http/web/", 400, "invalid port"},
		{"POST", "/http/web/80/", 405, "method not allowed"},
		{"DELETE", "/spool/web/0/", 405, "method not allowed"},
		{"POST", "/status", 405, ""},
		{"PUT", "/metrics", 405, ""},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, ts.base+tt.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.code || !strings.Contains(string(body), tt.bodyHas) {
			t.Errorf("%s %s = %d %q; want %d with %q", tt.method, tt.path, resp.StatusCode, body, tt.code, tt.bodyHas)
		}
	}
}

// The server survives hostile input and keeps answering.
func TestHostileInput(t *testing.T) {
	ts := startServer(t, nil)
	hostile := []string{
		"\x00\x01\x02garbage\r\n\r\n",
		"GET / HTTP/9.9\r\n\r\n",
		"GET /spool/web/0/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"GET /spool/web/0/ HTTP/1.1\r\nX-Big: " + strings.Repeat("a", 64<<10) + "\r\n\r\n",
		"GET /" + strings.Repeat("a/", 20000) + " HTTP/1.0\r\n\r\n",
		"POST /spool/web/0/status HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999\r\n\r\nstatus=down",
	}
	for _, request := range hostile {
		conn, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(conn, request)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err == nil {
			if resp.StatusCode < 400 {
				t.Errorf("hostile request %.60q answered %d", request, resp.StatusCode)
			}
			resp.Body.Close()
		}
		conn.Close()
	}
	if code, _, _ := ts.get(t, "/spool/web/0/"); code != 200 {
		t.Fatalf("server no longer answers after hostile input: %d", code)
	}
}

func TestStatusEndpoints(t *testing.T) {
	ts := startServer(t, nil)
	port, _ := backendPort(t, func(w http.ResponseWriter, r *http.Request) {})
	for range 3 {
		ts.get(t, "/http/web/"+port+"/")
	}
	ts.get(t, "/spool/api/0/")
	code, body, header := ts.get(t, "/status")
	var status struct {
		Cache   map[string]uint64 `json:"cache"`
		Uptime  *float64          `json:"uptime"`
		Version string            `json:"version"`
	}
	if err := json.Unmarshal([]byte(body), &status); err != nil || code != 200 || header.Get("Content-Type") != "application/json; charset=UTF-8" {
		t.Fatalf("/status = %d %s %v", code, body, err)
	}
	for _, key := range []string{"gets", "hits", "misses", "sets", "expirations"} {
		if _, ok := status.Cache[key]; !ok {
			t.Errorf("/status cache lacks %q: %s", key, body)
		}
	}
	if status.Uptime == nil || status.Version != "test" || status.Cache["gets"] != 3 || status.Cache["hits"] != 2 || status.Cache["misses"] != 1 {
		t.Errorf("/status = %s", body)
	}

	_, body, _ = ts.get(t, "/status/count")
	var counts struct {
		ServiceAccessCounts map[string]map[string]int `json:"service_access_counts"`
	}
	if err := json.Unmarshal([]byte(body), &counts); err != nil || counts.ServiceAccessCounts["web"]["127.0.0.1"] != 3 {
		t.Fatalf("/status/count = %s", body)
	}

	_, body, _ = ts.get(t, "/recent")
	var recent struct {
		SeenServices [][2]json.RawMessage `json:"seen_services"`
		Threshold    int                  `json:"threshold_seconds"`
	}
	if err := json.Unmarshal([]byte(body), &recent); err != nil || recent.Threshold != 600 || len(recent.SeenServices) != 2 ||
		string(recent.SeenServices[0][0]) != `"api"` || !strings.Contains(string(recent.SeenServices[1][1]), `"code":200,"remote_ip":"127.0.0.1","ts":`) {
		t.Fatalf("/recent = %s", body)
	}
	if code, _, _ := ts.get(t, "/recent?threshold=soon"); code != 400 {
		t.Fatalf("bad threshold: %d", code)
	}
}

func TestStatusReportsUnreadableMarks(t *testing.T) {
	ts := startServer(t, nil)
	if err := writeMarkFile(ts.store.Root(), "web", `{"expiration": "never"}`); err != nil {
		t.Fatal(err)
	}
	_, body, _ := ts.get(t, "/status")
	if !strings.Contains(body, `"unreadable_marks":[{"mark":"web"`) {
		t.Fatalf("/status does not say the mark is unreadable: %s", body)
	}
	if code, body, _ := ts.get(t, "/spool/web/0/"); code != 503 || !strings.Contains(body, "unreadable mark") {
		t.Fatalf("unreadable mark must fail closed: %d %q", code, body)
	}
}

func TestRemoteSpoolChanges(t *testing.T) {
	post := func(t *testing.T, ts *testServer, path string, form url.Values, header ...string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, ts.base+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	down := url.Values{"status": {"down"}, "reason": {"remote"}, "expiration": {"4102444800"}, "creation": {"1700000000"}}

	t.Run("disabled by default", func(t *testing.T) {
		ts := startServer(t, nil)
		if code, _ := post(t, ts, "/spool/web/0/status", down); code != 403 {
			t.Fatalf("got %d, want 403", code)
		}
		if _, isDown := ts.store.Status("web", 0); isDown {
			t.Fatal("refused change was written")
		}
	})
	t.Run("source not allowed", func(t *testing.T) {
		ts := startServer(t, func(c *config.Config) {
			c.AllowRemoteSpoolChanges = true
			c.RemoteSpoolAllowedCIDRs = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
		})
		if code, _ := post(t, ts, "/spool/web/0/status", down); code != 403 {
			t.Fatalf("got %d, want 403", code)
		}
	})
	t.Run("link-local source with its zone", func(t *testing.T) {
		// A client on a link-local address arrives with the interface as its zone
		// (fe80::1%eth0); CIDRs have no zones, and netip.Prefix.Contains is false for any
		// zoned address, so the zone must not decide.
		ts := startServer(t, func(c *config.Config) {
			c.AllowRemoteSpoolChanges = true
			c.RemoteSpoolAllowedCIDRs = []netip.Prefix{netip.MustParsePrefix("fe80::/10"), netip.MustParsePrefix("10.0.0.0/8")}
		})
		for _, tc := range []struct {
			remote string
			want   int
		}{
			{"[fe80::1%eth0]:4000", 200},
			{"[fe80::1]:4000", 200},
			{"[fd00::1%eth0]:4000", 403}, // a zone is no pass
			{"[::ffff:10.1.2.3]:4000", 200},
		} {
			req := httptest.NewRequest(http.MethodPost, "/spool/web/0/status", strings.NewReader(down.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.RemoteAddr = tc.remote
			rec := httptest.NewRecorder()
			ts.Server.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Errorf("from %s: %d %q, want %d", tc.remote, rec.Code, rec.Body.String(), tc.want)
			}
		}
		if _, isDown := ts.store.Status("web", 0); !isDown {
			t.Fatal("change from an allowed link-local source was not written")
		}
	})
	t.Run("token", func(t *testing.T) {
		ts := startServer(t, func(c *config.Config) {
			c.AllowRemoteSpoolChanges = true
			c.RemoteSpoolToken = "s3cret"
		})
		if code, _ := post(t, ts, "/spool/web/0/status", down); code != 401 {
			t.Fatalf("no token: %d, want 401", code)
		}
		if code, _ := post(t, ts, "/spool/web/0/status", down, "Authorization", "Bearer nope"); code != 403 {
			t.Fatalf("wrong token: %d, want 403", code)
		}
		code, body := post(t, ts, "/spool/web/8080/status", down, "Authorization", "Bearer s3cret")
		if code != 200 {
			t.Fatalf("right token: %d %s", code, body)
		}
		m, isDown := ts.store.Status("web", 8080)
		if !isDown || m.Reason != "remote" || m.Creation.Unix() != 1700000000 || m.Expiration.Unix() != 4102444800 {
			t.Fatalf("mark = %+v, %v", m, isDown)
		}
		if code, body := post(t, ts, "/spool/web/8080/status", url.Values{"status": {"up"}}, "Authorization", "Bearer s3cret"); code != 200 {
			t.Fatalf("up: %d %s", code, body)
		}
		if _, isDown := ts.store.Status("web", 8080); isDown {
			t.Fatal("still down after remote up")
		}
	})
	t.Run("bad input", func(t *testing.T) {
		ts := startServer(t, func(c *config.Config) { c.AllowRemoteSpoolChanges = true })
		tests := []struct {
			path string
			form url.Values
		}{
			{"/spool/..%2Fetc/0/status", down},
			{"/spool/.x/0/status", down},
			{"/spool/web/70000/status", down},
			{"/spool/web/x/status", down},
			{"/spool/web/0/status", url.Values{"status": {"sideways"}}},
			{"/spool/web/0/status", url.Values{"status": {"down"}, "expiration": {"1"}}},
			{"/spool/web/0/status", url.Values{"status": {"down"}, "expiration": {"tomorrow"}}},
		}
		for _, tt := range tests {
			if code, body := post(t, ts, tt.path, tt.form); code != 400 || strings.Contains(strings.TrimSpace(body), "\n") {
				t.Errorf("POST %s %v = %d %q, want a one-line 400", tt.path, tt.form, code, body)
			}
		}
		if marks, _ := ts.store.List(); len(marks) != 0 {
			t.Fatalf("bad input wrote %+v", marks)
		}
	})
}

func writeMarkFile(root, name, content string) error {
	return os.WriteFile(filepath.Join(root, name), []byte(content), 0o644)
}

// lockedBuffer collects log lines written from several goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) lines(substr string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), substr)
}

// One info line per change of a check's health, not per check, and two different checks of
// one service (spool and tcp here) do not make each other "flap".
func TestTransitionsLoggedOncePerChange(t *testing.T) {
	var logs lockedBuffer
	ts := startServer(t, func(c *config.Config) { c.CacheTime = 0 })
	ts.SetLogger(zerolog.New(&logs))
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	for range 5 {
		ts.get(t, "/spool/api/"+port+"/")
		ts.get(t, "/tcp/api/"+port+"/")
	}
	if n := logs.lines("api is"); n != 0 {
		t.Fatalf("%d transition lines while nothing changed:\n%s", n, logs.buf.String())
	}
	l.Close()
	for range 3 {
		ts.get(t, "/tcp/api/"+port+"/")
	}
	if n := logs.lines("api is DOWN"); n != 1 {
		t.Fatalf("%d DOWN lines, want 1:\n%s", n, logs.buf.String())
	}
}

func TestHTTPDetails(t *testing.T) {
	ts := startServer(t, func(c *config.Config) { c.AllowRemoteSpoolChanges = true })
	ts.store.DownSince("web", 0, "maint", time.Time{}, time.Unix(1750000000, 0))
	req, _ := http.NewRequest(http.MethodHead, ts.base+"/spool/web/0/", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.ContentLength != int64(len("Service web in down state since 1750000000.000000: maint")) {
		t.Fatalf("HEAD: %d, Content-Length %d", resp.StatusCode, resp.ContentLength)
	}
	req, _ = http.NewRequest(http.MethodPut, ts.base+"/spool/web/0/status", nil)
	resp, _ = http.DefaultClient.Do(req)
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD, POST" {
		t.Fatalf("PUT on the spool API: %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	for _, port := range []string{"-0", "+80", "0x1"} {
		resp, err := http.PostForm(ts.base+"/spool/web/"+port+"/status", url.Values{"status": {"up"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("POST with port %q: %d, want 400", port, resp.StatusCode)
		}
	}
	if _, down := ts.store.Status("web", 0); !down {
		t.Fatal("a refused POST changed the spool")
	}
	for _, threshold := range []string{"9223372037", "99999999999999", "-1"} {
		if code, _, _ := ts.get(t, "/recent?threshold="+threshold); code != 400 {
			t.Errorf("threshold %s: %d, want 400", threshold, code)
		}
	}
}

func TestUpstreamHTMLIsServedAsText(t *testing.T) {
	port, _ := backendPort(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(404)
		io.WriteString(w, "<html><body>Cannot GET <script>alert(1)</script></body></html>")
	})
	ts := startServer(t, nil)
	code, _, header := ts.get(t, "/http/web/"+port+"/x")
	if code != 404 || header.Get("Content-Type") != "text/plain; charset=utf-8" || header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("got %d, Content-Type %q, X-Content-Type-Options %q", code, header.Get("Content-Type"), header.Get("X-Content-Type-Options"))
	}
}

// A mark that cannot be parsed fails closed, and the log says so once, not per check.
func TestUnreadableMarkLoggedOnce(t *testing.T) {
	var logs lockedBuffer
	ts := startServer(t, nil)
	ts.SetLogger(zerolog.New(&logs))
	if err := writeMarkFile(ts.store.Root(), "web", `{"expiration": "never"}`); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if code, _, _ := ts.get(t, "/spool/web/0/"); code != 503 {
			t.Fatalf("unreadable mark answered %d", code)
		}
	}
	if n := logs.lines("unreadable mark counts as down"); n != 1 {
		t.Fatalf("%d warnings, want 1:\n%s", n, logs.buf.String())
	}
}

// A request's source is its connection's, worked out once when the connection was accepted:
// a keep-alive connection's requests do not parse RemoteAddr again (nor trust it).
func TestSourceComesFromTheConnection(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wrapped := Wrap(l)
	defer wrapped.Close()
	dialer := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 7)}}
	client, err := dialer.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	conn, err := wrapped.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := httptest.NewRequest(http.MethodGet, "/http/web/80/", nil).WithContext(withConn(context.Background(), conn))
	r.RemoteAddr = "not an address"
	if got := remoteAddr(r); got != netip.MustParseAddr("127.0.0.7") {
		t.Errorf("source %v, want the connection's 127.0.0.7", got)
	}
	plain := httptest.NewRequest(http.MethodGet, "/http/web/80/", nil)
	plain.RemoteAddr = "[::ffff:192.0.2.1]:4000"
	if got := remoteAddr(plain); got != netip.MustParseAddr("192.0.2.1") {
		t.Errorf("without a wrapped connection: source %v, want 192.0.2.1 from RemoteAddr", got)
	}
}
