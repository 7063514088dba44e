package check

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// startHAProxyStats runs the machine's haproxy in the foreground with a CSV stats listener on
// a free loopback port and the given backends, and returns the stats port once it answers.
func startHAProxyStats(t *testing.T, backends string) int {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("haproxy: %v", err)
		}
		t.Skipf("haproxy: %v", err)
	}
	cfgPath := filepath.Join(t.TempDir(), "haproxy.cfg")
	for attempt := 0; ; attempt++ {
		port := closedPort(t)
		cfg := fmt.Sprintf(`global
  maxconn 100
defaults
  mode http
  timeout connect 1s
  timeout client 5s
  timeout server 5s
listen stats
  bind 127.0.0.1:%d
  stats enable
  stats uri /
%s`, port, backends)
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "-db", "-f", cfgPath)
		var out syncBuilder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting haproxy: %v", err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-exited
		})
		// Polling an external process is the one wait that has no event to block on.
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case <-exited:
				if attempt < 4 && strings.Contains(out.String(), "cannot bind") {
					goto retry
				}
				t.Fatalf("haproxy exited:\n%s", out.String())
			default:
			}
			if resp, err := http.Get("http://" + localAddr(port) + "/;csv"); err == nil {
				_ = resp.Body.Close()
				return port
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("haproxy's stats did not answer within 10s:\n%s", out.String())
	retry:
	}
}

func TestHAProxyAgainstHAProxy(t *testing.T) {
	_, upPort := listenPort(t)
	downPort := closedPort(t)
	stats := startHAProxyStats(t, fmt.Sprintf(`backend web
  server s1 127.0.0.1:%d
backend db
  server s1 127.0.0.1:%d check inter 50ms fall 1 rise 1
backend maint
  server s1 127.0.0.1:%d disabled
`, upPort, downPort, upPort))
	reg := NewRegistry(Options{})

	// HAProxy counts a server up until its first check says otherwise.
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := reg["haproxy"].Check(checkCtx(t, 5*time.Second), Target{Service: "db", Port: stats})
		if err != nil {
			t.Fatal(err)
		}
		if got.Code == 500 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("backend db still %q after 10s", got.Message)
		}
		time.Sleep(20 * time.Millisecond)
	}

	tests := []struct {
		backend  string
		wantCode int
		outcome  Outcome
		msg      string
	}{
		{"web", 200, OutcomeOK, "web is UP"},
		{"db", 500, OutcomeUpstreamFail, "db is DOWN"},
		{"maint", 500, OutcomeUpstreamFail, "maint is DOWN"}, // every server in maintenance
		{"stats", 200, OutcomeOK, "stats is UP"},             // a listen section has a backend row
		{"nosuch", 500, OutcomeUpstreamFail, "nosuch is not found"},
	}
	for _, tt := range tests {
		t.Run(tt.backend, func(t *testing.T) {
			got, err := reg["haproxy"].Check(checkCtx(t, 5*time.Second), Target{Service: tt.backend, Port: stats, RawQuery: "host=127.0.0.2"})
			if err != nil {
				t.Fatal(err)
			}
			if got.Code != tt.wantCode || got.Outcome != tt.outcome || got.Message != tt.msg {
				t.Errorf("Check(%s) = %+v, want code %d, outcome %s, message %q", tt.backend, got, tt.wantCode, tt.outcome, tt.msg)
			}
		})
	}
}

func TestHAProxyStubs(t *testing.T) {
	stub := func(h http.HandlerFunc) int {
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		return portOf(t, srv.Listener.Addr().String())
	}
	header := "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight\n"
	page := func(body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/;csv" {
				http.NotFound(w, r)
				return
			}
			_, _ = w.Write([]byte(body))
		}
	}
	endless := func(row string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			chunk := []byte(strings.Repeat(row, 1000))
			for {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}
	}
	runProtocolCases(t, NewRegistry(Options{}), []protocolCase{
		{name: "refused", protocol: "haproxy", port: closedPort(t), wantCode: 503, outcome: OutcomeRefused, msg: regexp.MustCompile(`connection refused after \d+\.\d{3}s$`)},
		{name: "silent", protocol: "haproxy", port: silentPort(t), timeout: 200 * time.Millisecond, wantCode: 503, outcome: OutcomeTimeout, msg: regexp.MustCompile(` after \d+\.\d{3}s$`)},
		{name: "stats behind auth", protocol: "haproxy", port: stub(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(401) }), wantCode: 500, outcome: OutcomeUpstreamFail, msg: regexp.MustCompile(`^HAProxy stats answered 401 Unauthorized$`)},
		{name: "status column from the header", protocol: "haproxy", port: stub(page("# pxname,svname,status\nsvc,BACKEND,UP\n")), wantCode: 200, outcome: OutcomeOK, msg: regexp.MustCompile(`^svc is UP$`)},
		{name: "no header, column 18", protocol: "haproxy", port: stub(page("svc,FRONTEND,,,,,,,,,,,,,,,,OPEN,\nsvc,BACKEND,,,,,,,,,,,,,,,,NOLB,1")), wantCode: 500, outcome: OutcomeUpstreamFail, msg: regexp.MustCompile(`^svc is NOLB$`)},
		{name: "quoted fields", protocol: "haproxy", port: stub(page(header + "\"a,b\",BACKEND,,,,,,,,,,,,,,,,UP,1\nsvc,\"BACK\"\"END\",,,,,,,,,,,,,,,,UP,1\nsvc,BACKEND,,,,,,,,,,,,,,,,\"MAINT (via x,y)\",1\r\n")), wantCode: 500, outcome: OutcomeUpstreamFail, msg: regexp.MustCompile(`^svc is MAINT \(via x,y\)$`)},
		{name: "short rows skipped", protocol: "haproxy", port: stub(page(header + "svc,BACKEND,UP\n")), wantCode: 500, outcome: OutcomeUpstreamFail, msg: regexp.MustCompile(`^svc is not found$`)},
		{name: "control characters", protocol: "haproxy", port: stub(page(header + "svc,BACKEND,,,,,,,,,,,,,,,,DO\x1bWN,1\n")), wantCode: 500, outcome: OutcomeUpstreamFail, msg: regexp.MustCompile(`^svc is DO\?WN$`)},
		{name: "endless row", protocol: "haproxy", port: stub(endless("x")), wantCode: 500, outcome: OutcomeUpstreamFail, msg: regexp.MustCompile(`^HAProxy stats: a row longer than 65536 bytes$`)},
		{name: "endless page cut at the cap", protocol: "haproxy", port: stub(endless("other,BACKEND,,,,,,,,,,,,,,,,UP,1\n")), timeout: 30 * time.Second, wantCode: 500, outcome: OutcomeUpstreamFail, msg: regexp.MustCompile(`^HAProxy stats: reply longer than 16777216 bytes$`)},
		{name: "stats page never ends", protocol: "haproxy", port: stub(func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte(header))
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}), timeout: 200 * time.Millisecond, wantCode: 503, outcome: OutcomeTimeout, msg: regexp.MustCompile(`^reading HAProxy stats: .* after \d+\.\d{3}s$`)},
	})
}

// FuzzBackendStatus: any page gives a status or not, never a panic, and a status found is a
// field of one row.
func FuzzBackendStatus(f *testing.F) {
	f.Add("# pxname,svname,status\nsvc,BACKEND,UP\n", "svc")
	f.Add("svc,BACKEND,,,,,,,,,,,,,,,,UP,1\r\n", "svc")
	f.Add("\"svc\",BACKEND,\"a\"\"b\n", "svc")
	f.Add("# \n,BACKEND,", "")
	f.Fuzz(func(t *testing.T, page, backend string) {
		status, found, err := backendStatus(strings.NewReader(page), backend)
		if err != nil && found {
			t.Errorf("found and error %v", err)
		}
		if found && strings.ContainsAny(status, "\n") && !strings.Contains(page, "\"") {
			t.Errorf("status %q spans lines of an unquoted page", status)
		}
	})
}
