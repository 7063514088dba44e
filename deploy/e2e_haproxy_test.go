package deploy_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// backendApp is one instance of the "web" service: a real HTTP server whose /health can be
// made to fail, and whose / says which instance answered (to follow HAProxy's traffic).
type backendApp struct {
	name    string
	srv     *httptest.Server
	failing atomic.Bool
}

func newBackendApp(t *testing.T, name string) *backendApp {
	t.Helper()
	a := &backendApp{name: name}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/health" && a.failing.Load():
			http.Error(w, name+" is broken", http.StatusInternalServerError)
		case r.URL.Path == "/health":
			fmt.Fprintf(w, "%s ok\n", name)
		default:
			fmt.Fprint(w, name)
		}
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *backendApp) port() int {
	_, p, _ := strings.Cut(a.srv.Listener.Addr().String(), ":")
	n, _ := strconv.Atoi(p)
	return n
}

// The HAProxy config under test. Every server is checked by hacheck (`check port <hacheck>`)
// on the server's own host (127.0.0.1 here); `http-check send-state` tells hacheck the
// server's traffic port, so the port in each URL (1) is never used: if send-state handling
// broke, hacheck would check 127.0.0.1:1 and every http server would go DOWN.
var haproxyTemplate = haproxyConfig(`
frontend fe_web
    bind 127.0.0.1:{{.Front}}
    default_backend be_web

# The service "web", three instances, checked with a real HTTP check of /health.
backend be_web
    balance roundrobin
    option httpchk GET /http/web/1/health
    http-check send-state
{{- range .Apps}}
    server {{.Name}} 127.0.0.1:{{.Port}} check port {{$.Hacheck}} inter 200ms fall 2 rise 1
{{- end}}

# The service "api", spool-only, asked over HTTP/1.1 without a Host header (HAProxy sends
# none): net/http alone would answer 400 and take the server DOWN.
backend be_api
    option httpchk GET /spool/api/0/ HTTP/1.1
    server api1 127.0.0.1:{{(index .Apps 0).Port}} check port {{.Hacheck}} inter 200ms fall 2 rise 1

# The service "cache", a TCP check: only "hadown all" (of the marks this test sets) takes it down.
backend be_cache
    option httpchk GET /tcp/cache/1/
    http-check send-state
    server cache1 127.0.0.1:{{(index .Apps 1).Port}} check port {{.Hacheck}} inter 200ms fall 2 rise 1

# The service "stable", for the restart step. While hacheck restarts, HAProxy's checks are
# refused; fall 2 x inter 200ms would tolerate only ~400ms of that, and a restart (SIGTERM,
# graceful stop, exec, start) on a loaded CI machine under -race can take longer. fall 10
# tolerates ~2s, which a working restart always fits in, while a hacheck that failed to come
# back on the same port would still take the server DOWN within the step's wait.
backend be_stable
    option httpchk GET /http/stable/1/health
    http-check send-state
    server stable1 127.0.0.1:{{(index .Apps 2).Port}} check port {{.Hacheck}} inter 200ms fall 10 rise 1
`)

type templateApp struct {
	Name string
	Port int
}

// TestHAProxyEndToEnd runs the real hacheck binary behind a real HAProxy and drives it with
// the real hadown/haup commands, reading HAProxy's view of every server over its admin socket.
func TestHAProxyEndToEnd(t *testing.T) {
	haproxyBin := requireTool(t, "haproxy", "/usr/sbin/haproxy")
	bin := hacheckBin(t)
	start := time.Now()

	dir := t.TempDir()
	spoolRoot := filepath.Join(dir, "spool")
	hc := startHacheck(t, bin, spoolRoot, writeHacheckConfig(t, dir), 0)

	apps := []*backendApp{newBackendApp(t, "app1"), newBackendApp(t, "app2"), newBackendApp(t, "app3")}
	var tApps []templateApp
	for _, a := range apps {
		tApps = append(tApps, templateApp{a.name, a.port()})
	}
	hp, front := startHAProxyConfig(t, haproxyBin, haproxyTemplate, map[string]any{"Hacheck": hc.port, "Apps": tApps})
	t.Logf("hacheck on :%d, haproxy frontend on :%d, apps on %v (setup %v)", hc.port, front, tApps, time.Since(start).Round(time.Millisecond))

	web := []string{"be_web/app1", "be_web/app2", "be_web/app3"}
	everyServer := append([]string{"be_api/api1", "be_cache/cache1", "be_stable/stable1"}, web...)
	allUp := func(st stats) bool {
		for _, k := range everyServer {
			if s, ok := st[k]; !ok || !s.up() {
				return false
			}
		}
		return true
	}
	const timeout = 10 * time.Second
	step := func(name string, f func(t *testing.T)) bool {
		began := time.Now()
		ok := t.Run(name, f)
		t.Logf("step %s: %v", name, time.Since(began).Round(time.Millisecond))
		return ok
	}

	if !step("all servers UP through hacheck", func(t *testing.T) {
		// Servers start UP in HAProxy before any check ran: require a real L7OK, and a
		// check_code of 200 seen for each (HAProxy hides the code while a check runs).
		saw200 := map[string]bool{}
		hp.waitState(t, timeout, "every server UP with a 200 from hacheck", func(st stats) bool {
			for _, k := range everyServer {
				if st[k].up() && st[k]["check_code"] == "200" {
					saw200[k] = true
				}
			}
			return allUp(st) && len(saw200) == len(everyServer)
		})
		// Traffic through HAProxy reaches every instance.
		got := frontendHits(t, front, 30)
		for _, a := range apps {
			if got[a.name] == 0 {
				t.Fatalf("no request through HAProxy reached %s: %v", a.name, got)
			}
		}
	}) {
		return
	}

	if !step("HTTP/1.1 check without Host header (be_api) is UP", func(t *testing.T) {
		st := hp.mustStats(t)
		if s := st["be_api/api1"]; !s.up() {
			t.Fatalf("be_api/api1 (GET /spool/api/0/ HTTP/1.1, no Host) is not UP with 200:\n%v", s)
		}
	}) {
		return
	}

	if !step("hadown web takes every web server DOWN", func(t *testing.T) {
		hc.cli(t, "hadown", "-r", "test", "web")
		hp.waitState(t, timeout, "every be_web server DOWN by hacheck's 503, other services UP", func(st stats) bool {
			for _, k := range web {
				if !st[k].downBy("503") {
					return false
				}
			}
			return st["be_api/api1"].up() && st["be_cache/cache1"].up() && st["be_stable/stable1"].up()
		})
		resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(front) + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("request through HAProxy with every web server down: %s, want 503", resp.Status)
		}
	}) {
		return
	}

	if !step("haup web brings them back", func(t *testing.T) {
		hc.cli(t, "haup", "web")
		hp.waitState(t, timeout, "every server UP again", allUp)
	}) {
		return
	}

	if !step("hadown -P takes only that instance DOWN", func(t *testing.T) {
		before := hp.mustStats(t)
		app2 := apps[1]
		hc.cli(t, "hadown", "-r", "bad disk", "-P", strconv.Itoa(app2.port()), "web")
		hp.waitState(t, timeout, "be_web/app2 DOWN, app1 and app3 UP", func(st stats) bool {
			return st["be_web/app2"].downBy("503") && st["be_web/app1"].up() && st["be_web/app3"].up()
		})
		// A mark on the whole service would take app1 and app3 down within the same couple of
		// checks: watch them for 5 more check intervals.
		hp.holdState(t, time.Second, "app1 and app3 UP while app2 is marked down", func(st stats) bool {
			return st["be_web/app1"].up() && st["be_web/app3"].up() && st["be_web/app2"].status() == "DOWN"
		})
		after := hp.mustStats(t)
		for _, k := range []string{"be_web/app1", "be_web/app3"} {
			if after[k].num("chkfail") != before[k].num("chkfail") {
				t.Fatalf("%s had failed checks while only app2 was marked down:\nbefore %v\nafter  %v", k, before[k], after[k])
			}
		}
		got := frontendHits(t, front, 20)
		if got["app2"] != 0 || got["app1"] == 0 || got["app3"] == 0 {
			t.Fatalf("traffic through HAProxy with app2 down: %v, want app1 and app3 only", got)
		}
		hc.cli(t, "haup", "-P", strconv.Itoa(app2.port()), "web")
		hp.waitState(t, timeout, "every server UP again", allUp)
	}) {
		return
	}

	if !step("a failing service goes DOWN and recovers", func(t *testing.T) {
		apps[0].failing.Store(true)
		hp.waitState(t, timeout, "be_web/app1 DOWN with the service's own 500, app2 and app3 UP", func(st stats) bool {
			return st["be_web/app1"].downBy("500") && st["be_web/app2"].up() && st["be_web/app3"].up()
		})
		apps[0].failing.Store(false)
		hp.waitState(t, timeout, "every server UP again", allUp)
	}) {
		return
	}

	if !step("hadown all takes every server of every backend DOWN", func(t *testing.T) {
		hc.cli(t, "hadown", "-r", "rack move", "all")
		hp.waitState(t, timeout, "every server DOWN by hacheck's 503", func(st stats) bool {
			for _, k := range everyServer {
				if !st[k].downBy("503") {
					return false
				}
			}
			return true
		})
		hc.cli(t, "haup", "all")
		hp.waitState(t, timeout, "every server UP again", allUp)
	}) {
		return
	}

	step("hacheck restart keeps servers UP", func(t *testing.T) {
		before := hp.mustStats(t)

		// Sample HAProxy's view for the whole restart window.
		var (
			mu       sync.Mutex
			samples  int
			downSeen []string // be_stable DOWN at any sample: the assertion
			webDips  []string // fall-2 servers leaving plain UP: reported, not asserted
		)
		stop := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			for {
				if st, err := hp.stats(); err == nil {
					mu.Lock()
					samples++
					for k, s := range st {
						switch {
						case strings.HasPrefix(k, "be_stable/") && !strings.HasPrefix(s.status(), "UP"):
							downSeen = append(downSeen, s.String())
						case !strings.HasPrefix(k, "be_stable/") && s.status() != "UP":
							webDips = append(webDips, s.String())
						}
					}
					mu.Unlock()
				}
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		}()
		t.Cleanup(func() {
			select {
			case <-stop:
			default:
				close(stop)
			}
			<-sampled
		})

		t0 := time.Now()
		exitTook := hc.stop(t, 20*time.Second)
		if hc.err != nil {
			t.Errorf("hacheck exited with %v on SIGTERM, want a clean exit", hc.err)
		}
		hc2 := startHacheck(t, bin, spoolRoot, hc.config, hc.port)
		gap := time.Since(t0)
		// The restarted process must have answered HAProxy (a 200 for "stable" in its
		// /recent), and HAProxy must have taken that answer: then the window is over.
		waitFor(t, timeout, "the restarted hacheck to answer HAProxy's check of stable", func() (bool, string) {
			resp, err := http.Get(hc2.url("/recent"))
			if err != nil {
				return false, err.Error()
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			var recent struct {
				Seen [][2]json.RawMessage `json:"seen_services"`
			}
			if err := json.Unmarshal(body, &recent); err != nil {
				return false, string(body)
			}
			for _, pair := range recent.Seen {
				var name string
				var seen struct{ Code int }
				if json.Unmarshal(pair[0], &name) == nil && json.Unmarshal(pair[1], &seen) == nil && name == "stable" && seen.Code == 200 {
					return true, ""
				}
			}
			return false, string(body)
		})
		after := hp.waitState(t, timeout, "be_stable/stable1 UP with a 200 from the new hacheck", func(st stats) bool {
			return st["be_stable/stable1"].up()
		})
		close(stop)
		<-sampled

		mu.Lock()
		defer mu.Unlock()
		b, a := before["be_stable/stable1"], after["be_stable/stable1"]
		t.Logf("restart: old process exited %v after SIGTERM, new one ready %v after SIGTERM; %d samples; stable1 failed checks during the restart: %d",
			exitTook.Round(time.Millisecond), gap.Round(time.Millisecond), samples, a.num("chkfail")-b.num("chkfail"))
		if len(webDips) > 0 {
			t.Logf("fall-2 servers left UP during the restart (%d samples, not asserted), first: %s", len(webDips), webDips[0])
		}
		if len(downSeen) > 0 {
			t.Fatalf("be_stable/stable1 went DOWN during the hacheck restart (%d samples), first: %s", len(downSeen), downSeen[0])
		}
		if a.num("chkdown") != b.num("chkdown") {
			t.Fatalf("be_stable/stable1 had an UP->DOWN transition during the restart:\nbefore %v\nafter  %v", b, a)
		}
		// chkdown is the definitive check (HAProxy counts every UP->DOWN); the samples show
		// the transient states. The window can be short (a restart takes ~30ms, then one
		// check interval), so only require that sampling worked at all.
		if samples == 0 {
			t.Fatal("no stats samples during the restart window")
		}
	})
	t.Logf("total %v", time.Since(start).Round(time.Millisecond))
}

// frontendHits sends n requests through HAProxy's frontend and counts which instance answered.
func frontendHits(t *testing.T, front, n int) map[string]int {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	got := map[string]int{}
	for range n {
		resp, err := client.Get("http://127.0.0.1:" + strconv.Itoa(front) + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request through HAProxy: %s %q", resp.Status, body)
		}
		got[string(body)]++
	}
	return got
}
