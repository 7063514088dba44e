package deploy_test

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// failingTemplate: two servers checked every second, taken out after 10 failed checks, so that
// an instance whose service fails stays UP at the load balancer for some 9 s.
var failingTemplate = haproxyConfig(`
frontend fe
    bind 127.0.0.1:{{.Front}}
    default_backend be_web

backend be_web
    option httpchk GET /http/web/1/health
    http-check send-state
    server app1 127.0.0.1:{{.App1}} check port {{.Hacheck}} inter 1s fall 10 rise 2
    server app2 127.0.0.1:{{.App2}} check port {{.Hacheck}} inter 1s fall 10 rise 2
`)

// A person takes the other instance down while one instance's service is failing: HAProxy
// still says UP (it waits for fall failed checks), but that server is leaving, and with the
// other marked down the backend is empty. The guard must refuse.
func TestGuardOtherInstanceFailing(t *testing.T) {
	haproxyBin := requireTool(t, "haproxy", "/usr/sbin/haproxy")
	bin := hacheckBin(t)
	dir := t.TempDir()
	var app1Failing atomic.Bool
	app := func(name string, failing *atomic.Bool) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if failing != nil && failing.Load() {
				http.Error(w, name+" failing", http.StatusInternalServerError)
				return
			}
			fmt.Fprintf(w, "%s ok\n", name)
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	app1, app2 := app("app1", &app1Failing), app("app2", nil)
	portOf := func(srv *httptest.Server) int { return srv.Listener.Addr().(*net.TCPAddr).Port }
	s := &maintSetup{hc: startHacheck(t, bin, filepath.Join(dir, "spool"), writeHacheckConfig(t, dir), 0)}
	hp, _ := startHAProxyConfig(t, haproxyBin, failingTemplate, map[string]any{"Node": "lb1", "Hacheck": s.hc.port,
		"App1": portOf(app1), "App2": portOf(app2)})
	s.lbs = []*haproxy{hp}
	hp.waitState(t, 15*time.Second, "both servers UP", func(st stats) bool { return st["be_web/app1"].up() && st["be_web/app2"].up() })
	s.waitEstablished(t, map[string]int{"web": 2})

	app1Failing.Store(true)
	waitFor(t, 15*time.Second, "hacheck failing app1's check while HAProxy still says UP", func() (bool, string) {
		snap, err := s.lbSnapshot("web")
		if err != nil {
			return false, err.Error()
		}
		for _, l := range snap.Servers {
			if l.Server == "be_web/app1" && l.State == "UP" && l.LastCode >= 500 {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", snap.Servers)
	})
	port2 := strconv.Itoa(portOf(app2))
	r := s.run(t, "hadown", append(guard, "-r", "e2e", "-P", port2, "web")...)
	if st := hp.mustStats(t)["be_web/app1"]; !strings.HasPrefix(st.status(), "UP") {
		t.Skipf("app1 was already %s when hadown ran (a loaded machine): the case is not the one tested", st.status())
	}
	if r.code != 4 || !strings.Contains(r.stderr, "failing their checks") {
		t.Fatalf("hadown -P %s web while app1 fails its checks = exit %d, stderr %q; want exit 4 naming the failing server", port2, r.code, r.stderr)
	}
	noMark(t, s.hc.spoolRoot, "web:"+port2)
}
