package deploy_test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// A backend as SmartStack's synapse-tools writes it: the dummy port 0 in the check URL ("HAProxy
// is passing in the real port using the X-Haproxy-Server-State header"), extra healthcheck
// headers after HTTP/1.1 and no Host, and send-state.
var synapseTemplate = haproxyConfig(`
frontend fe_service_two
    bind 127.0.0.1:{{.Front}}
    default_backend service_two.main

backend service_two.main
    option httpchk GET /http/service_two.main/0/status HTTP/1.1\r\nX-Mode:\ ro
    http-check send-state
{{- range .Apps}}
    server {{.Name}} 127.0.0.1:{{.Port}} check port {{$.Hacheck}} inter 200ms fall 1 rise 1
{{- end}}
`)

// TestSynapseBackend: every server of the synapse-style backend is UP through hacheck, hadown
// -P <port> takes exactly that server DOWN, haup brings it back, and a script's hadown of the
// last server is not refused (nothing here runs at a terminal).
func TestSynapseBackend(t *testing.T) {
	haproxyBin := requireTool(t, "haproxy", "/usr/sbin/haproxy")
	bin := hacheckBin(t)
	dir := t.TempDir()
	// synapse-tools' own integration test configures hacheck to copy X-Mode to the service.
	cfg := writeHacheckConfig(t, dir, "http_headers_to_copy: [X-Mode]\n")
	hc := startHacheck(t, bin, filepath.Join(dir, "spool"), cfg, 0)

	var apps []templateApp
	for _, name := range []string{"srv1", "srv2"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/status" || r.Header.Get("X-Mode") != "ro" {
				http.Error(w, "want GET /status with X-Mode: ro", http.StatusBadRequest)
				return
			}
			w.Write([]byte("OK"))
		}))
		t.Cleanup(srv.Close)
		apps = append(apps, templateApp{name, srv.Listener.Addr().(*net.TCPAddr).Port})
	}
	hp, _ := startHAProxyConfig(t, haproxyBin, synapseTemplate, map[string]any{"Hacheck": hc.port, "Apps": apps})
	srv1, srv2 := "service_two.main/srv1", "service_two.main/srv2"
	const timeout = 10 * time.Second

	saw200 := map[string]bool{}
	hp.waitState(t, timeout, "both servers UP with a 200 from hacheck", func(st stats) bool {
		for _, k := range []string{srv1, srv2} {
			if st[k].up() && st[k]["check_code"] == "200" {
				saw200[k] = true
			}
		}
		return st[srv1].up() && st[srv2].up() && len(saw200) == 2
	})

	began := time.Now()
	hc.cli(t, "hadown", "-r", "deploy", "-P", strconv.Itoa(apps[0].Port), "service_two.main")
	hp.waitState(t, timeout, "srv1 DOWN by hacheck's 503, srv2 UP", func(st stats) bool {
		return st[srv1].downBy("503") && st[srv2].up()
	})
	t.Logf("hadown -P %d: srv1 DOWN in HAProxy after %v", apps[0].Port, time.Since(began).Round(time.Millisecond))

	// The last server, from a script: written, as the Python hadown did.
	if out := hc.cli(t, "hadown", "-r", "deploy", "-P", strconv.Itoa(apps[1].Port), "service_two.main"); out != "" {
		t.Fatalf("hadown printed %q, want nothing", out)
	}
	hp.waitState(t, timeout, "both servers DOWN", func(st stats) bool {
		return st[srv1].downBy("503") && st[srv2].downBy("503")
	})

	hc.cli(t, "haup", "-P", strconv.Itoa(apps[0].Port), "service_two.main")
	hc.cli(t, "haup", "-P", strconv.Itoa(apps[1].Port), "service_two.main")
	hp.waitState(t, timeout, "both servers UP again", func(st stats) bool { return st[srv1].up() && st[srv2].up() })
}
