package server

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hacheck/hacheck/config"
)

// Callers' shapes, taken from their own configuration and code: SmartStack's synapse (the
// HAProxy check line it writes for every backend) and nerve (its http check of hacheck).

// synapse-tools writes every backend as
//
//	option httpchk GET /<mode>/<service>/0/<uri> HTTP/1.1\r\nX-Mode:\ ro
//	http-check send-state
//
// "a dummy port value of '0' here because HAProxy is passing in the real port using the
// X-Haproxy-Server-State header", with the extra healthcheck headers after the version, and its
// integration test wants the body "OK" (hacheck configured to copy X-Mode to the service).
func TestSynapseCheckLine(t *testing.T) {
	var gotMode []string
	port, _ := backendPort(t, func(w http.ResponseWriter, r *http.Request) {
		gotMode = r.Header["X-Mode"]
		if r.URL.Path != "/status" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte("OK\n"))
	})
	ts := startServer(t, func(c *config.Config) { c.HTTPHeadersToCopy = []string{"X-Mode"} })
	// What HAProxy sends for that line: the request line and headers as written, then
	// send-state's header and "connection: close", and no Host.
	request := "GET /http/service_two.main/0/status HTTP/1.1\r\nX-Mode: ro\r\n" +
		"x-haproxy-server-state: UP 2/3; address=127.0.0.1; port=" + port + "; name=service_two.main/srv2; node=lb1; weight=1/2; scur=13/22; qcur=0\r\n" +
		"connection: close\r\n\r\n"
	status, body := ts.raw(t, request)
	if status != "200 OK" || strings.TrimSpace(body) != "OK" {
		t.Fatalf("synapse's check = %s %q, want 200 and body OK", status, body)
	}
	if len(gotMode) != 1 || gotMode[0] != "ro" {
		t.Errorf("the service saw X-Mode %q, want the check's ro copied", gotMode)
	}
	// hadown -P <the instance's port>: the same line now answers 503, HAProxy marks it DOWN.
	if _, err := ts.store.Down("service_two.main", mustAtoi(t, port), "deploy", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if status, body := ts.raw(t, request); status != "503 Service Unavailable" || !strings.HasPrefix(body, "Service service_two.main in down state since ") {
		t.Fatalf("after hadown -P %s: %s %q, want 503", port, status, body)
	}
	// The same line from a load balancer without send-state: port 0 is no port to check.
	if status, body := ts.raw(t, "GET /http/service_two.main/0/status HTTP/1.1\r\nX-Mode: ro\r\nconnection: close\r\n\r\n"); status != "400 Bad Request" || !strings.Contains(body, "invalid port 0") {
		t.Fatalf("port 0 without send-state = %s %q, want 400", status, body)
	}
}

// nerve-tools configures nerve's http check of hacheck as {host: 127.0.0.1, port: 6666, uri:
// /http/<service>/<port>/status, headers: {Host: ..., x-smartstack-target-identity: <service>},
// expect: "OK"}; nerve's check passes when the code is 2xx or 3xx and the body includes the
// expected text.
func TestNerveHTTPCheck(t *testing.T) {
	var gotHost string
	port, _ := backendPort(t, func(w http.ResponseWriter, r *http.Request) {
		gotHost = r.Host
		w.Write([]byte("OK"))
	})
	ts := startServer(t, nil)
	nervePasses := func() (bool, int, string) {
		code, body, _ := ts.get(t, "/http/service_three.main/"+port+"/status",
			"Host", "www.test.com", "x-smartstack-target-identity", "service_three.main")
		return code >= 200 && code < 400 && strings.Contains(body, "OK"), code, body
	}
	if ok, code, body := nervePasses(); !ok {
		t.Fatalf("nerve's check = %d %q, want it to pass", code, body)
	}
	if gotHost != "www.test.com" {
		t.Errorf("the service saw Host %q, want the check's www.test.com (http_headers_to_copy: [Host])", gotHost)
	}
	// updown_service's hadown <service>: nerve deregisters the instance.
	if _, err := ts.store.Down("service_three.main", 0, "updown_service", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if ok, code, body := nervePasses(); ok || code != 503 {
		t.Fatalf("after hadown: %d %q, want nerve's check to fail with 503", code, body)
	}
}

// PaaSTA drains a task by POSTing to /spool/<registration>/<task port>/status on the task's
// host, and SmartStack's HAProxy checks the same instance as /http/<registration>/0/<uri> with
// the task port in send-state: the drain must take that line out, and the undrain bring it back.
func TestPaastaDrainSeenBySynapseCheck(t *testing.T) {
	port, _ := backendPort(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("OK")) })
	ts := startServer(t, func(c *config.Config) { c.AllowRemoteSpoolChanges = true })
	check := func() (string, string) {
		return ts.raw(t, "GET /http/web.main/0/status HTTP/1.1\r\n"+
			"x-haproxy-server-state: UP; address=127.0.0.1; port="+port+"; name=web.main/task1; node=lb1; weight=1/3; scur=0/0; qcur=0\r\n"+
			"connection: close\r\n\r\n")
	}
	if status, _ := check(); status != "200 OK" {
		t.Fatalf("before the drain: %s", status)
	}
	spool := "/spool/web.main/" + port + "/status"
	paastaPost(t, ts, spool, url.Values{"status": {"down"}, "reason": {"Drained by Paasta"},
		"expiration": {pythonTime(time.Now().Add(2400 * time.Second))}})
	if status, body := check(); status != "503 Service Unavailable" || !strings.HasSuffix(body, ": Drained by Paasta") {
		t.Fatalf("after the drain: %s %q, want 503 with PaaSTA's reason", status, body)
	}
	if got := paastaGet(t, ts, spool); got.state != "down" || got.since == 0 {
		t.Fatalf("is_safe_to_kill reads %+v", got)
	}
	paastaPost(t, ts, spool, url.Values{"status": {"up"}})
	if status, _ := check(); status != "200 OK" {
		t.Fatalf("after the undrain: %s", status)
	}
}

// PaaSTA drains from another host (its deploy daemon POSTs to <task host>:6666), and its
// hacheck sidecar config sets only allow_remote_spool_changes: true. Remote changes stay
// loopback-only by default; the one line remote_spool_allowed_cidrs makes the drain work.
func TestPaastaRemoteDrainNeedsItsNetwork(t *testing.T) {
	tests := []struct {
		name, yaml string
		code       int
	}{
		{"PaaSTA's sidecar config", "allow_remote_spool_changes: true\n", http.StatusForbidden},
		{"with the drainers' network", "allow_remote_spool_changes: true\nremote_spool_allowed_cidrs: [10.0.0.0/8]\n", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _, err := config.Parse([]byte(tt.yaml))
			if err != nil {
				t.Fatal(err)
			}
			srv := New(cfg, Options{Store: watchedStore(t), Version: "test"})
			form := url.Values{"status": {"down"}, "reason": {"Drained by Paasta"}}
			req := httptest.NewRequest(http.MethodPost, "/spool/web.main/31000/status", strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.RemoteAddr = "10.40.1.7:51234" // the deploy daemon's host
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, req)
			if rec.Code != tt.code {
				t.Fatalf("POST from 10.40.1.7 = %d %q, want %d", rec.Code, rec.Body, tt.code)
			}
		})
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
