package deploy_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"text/template"
	"time"

	"github.com/hacheck/hacheck/spool"
)

// agentTemplate is a backend whose servers HAProxy checks twice: a plain TCP health check of
// the application, and hacheck's agent check, which says what the spool says. Nothing else
// touches hacheck, so every change of state below is the agent's doing.
var agentTemplate = template.Must(template.New("haproxy.cfg").Parse(`
global
    stats socket {{.Sock}} mode 600 level admin
    stats timeout 10s

defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
    timeout check 1s

frontend fe_agent
    bind 127.0.0.1:{{.Front}}
    default_backend be_agent

backend be_agent
    server app1 127.0.0.1:{{.App1}} weight 10 check inter 200ms agent-check agent-port {{.Agent}} agent-inter 200ms agent-send "web\n"
    server app2 127.0.0.1:{{.App2}} weight 10 check inter 200ms agent-check agent-port {{.Agent}} agent-inter 200ms agent-send "api\n"
`))

// TestHAProxyAgentCheck drives a real HAProxy through hacheck's agent-check listener: a down
// mark puts the server in MAINT, a drain mark in DRAIN, haup brings it back UP, and the other
// server, asking about another service, never moves.
func TestHAProxyAgentCheck(t *testing.T) {
	haproxyBin := requireTool(t, "haproxy", "/usr/sbin/haproxy")
	bin := hacheckBin(t)
	dir := t.TempDir()
	spoolRoot := filepath.Join(dir, "spool")
	agentPort := freePort(t)
	cfg := filepath.Join(dir, "hacheck.yml")
	if err := os.WriteFile(cfg, []byte("log_path: stderr\nagent_port: "+strconv.Itoa(agentPort)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	hc := startHacheck(t, bin, spoolRoot, cfg, 0)
	app1, app2 := newBackendApp(t, "app1"), newBackendApp(t, "app2")
	hp, _ := startHAProxy(t, haproxyBin, func(sock string, front int) string {
		var b bytes.Buffer
		err := agentTemplate.Execute(&b, map[string]any{"Sock": sock, "Front": front, "Agent": agentPort,
			"App1": app1.port(), "App2": app2.port()})
		if err != nil {
			t.Fatal(err)
		}
		return b.String()
	})

	const web, api = "be_agent/app1", "be_agent/app2"
	state := func(name, status, weight string) func(stats) bool {
		return func(st stats) bool {
			s, ok := st[name]
			return ok && s.status() == status && s["weight"] == weight
		}
	}
	both := func(a, b func(stats) bool) func(stats) bool {
		return func(st stats) bool { return a(st) && b(st) }
	}
	const settle = 10 * time.Second
	hp.waitState(t, settle, "both servers UP at full weight", both(state(web, "UP", "10"), state(api, "UP", "10")))

	hc.cli(t, "hadown", "-r", "kernel upgrade", "web")
	hp.waitState(t, settle, "app1 in MAINT by the agent", both(state(web, "MAINT", "10"), state(api, "UP", "10")))
	// The reply that put it there is what hacheck says the load balancer last fetched, once
	// it has polled repeatedly, as it does.
	var snap struct {
		Agents []struct {
			Port   int    `json:"port"`
			Source string `json:"source"`
			Reply  string `json:"reply"`
		} `json:"agents"`
	}
	waitFor(t, settle, "GET /lb/web lists HAProxy's agent", func() (bool, string) {
		resp, err := http.Get(hc.url("/lb/web"))
		if err != nil {
			return false, err.Error()
		}
		err = json.NewDecoder(resp.Body).Decode(&snap)
		resp.Body.Close()
		ok := err == nil && len(snap.Agents) == 1 && snap.Agents[0].Reply == "maint # kernel upgrade" && snap.Agents[0].Source == "127.0.0.1"
		return ok, fmt.Sprintf("%+v (%v)", snap.Agents, err)
	})

	hc.cli(t, "haup", "web")
	hp.waitState(t, settle, "app1 back UP after haup", both(state(web, "UP", "10"), state(api, "UP", "10")))

	// A drain mark, as hadown --drain writes it: DRAIN by the agent, then UP again once gone.
	store := spool.New(spoolRoot)
	if _, err := store.Put(spool.Mark{Service: "web", Reason: "deploy", Drain: true}); err != nil {
		t.Fatal(err)
	}
	hp.waitState(t, settle, "app1 in DRAIN by the agent", both(state(web, "DRAIN (agent)", "10"), state(api, "UP", "10")))
	hc.cli(t, "haup", "web")
	hp.waitState(t, settle, "app1 back UP after the drain", both(state(web, "UP", "10"), state(api, "UP", "10")))
}
