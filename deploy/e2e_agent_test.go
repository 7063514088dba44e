package deploy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hacheck/hacheck/lb"
	"github.com/hacheck/hacheck/spool"
)

// agentTemplate is a backend whose servers HAProxy checks twice: a plain TCP health check of
// the application, and hacheck's agent check, which says what the spool says. Nothing else
// touches hacheck, so every change of state below is the agent's doing.
var agentTemplate = haproxyConfig(`
frontend fe_agent
    bind 127.0.0.1:{{.Front}}
    default_backend be_agent

backend be_agent
    server app1 127.0.0.1:{{.App1}} weight 10 check inter 200ms agent-check agent-port {{.Agent}} agent-inter 200ms agent-send "web\n"
    server app2 127.0.0.1:{{.App2}} weight 10 check inter 200ms agent-check agent-port {{.Agent}} agent-inter 200ms agent-send "api\n"
`)

// TestHAProxyAgentCheck drives a real HAProxy through hacheck's agent-check listener: a down
// mark puts the server in MAINT, a drain mark in DRAIN, haup brings it back UP, and the other
// server, asking about another service, never moves.
func TestHAProxyAgentCheck(t *testing.T) {
	haproxyBin := requireTool(t, "haproxy", "/usr/sbin/haproxy")
	bin := hacheckBin(t)
	dir := t.TempDir()
	spoolRoot := filepath.Join(dir, "spool")
	agentPort := freePort(t)
	cfg := writeHacheckConfig(t, dir, "agent_port: "+strconv.Itoa(agentPort)+"\n")
	hc := startHacheck(t, bin, spoolRoot, cfg, 0)
	app1, app2 := newBackendApp(t, "app1"), newBackendApp(t, "app2")
	hp, _ := startHAProxyConfig(t, haproxyBin, agentTemplate, map[string]any{"Agent": agentPort, "App1": app1.port(), "App2": app2.port()})

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

// TestHAProxyAgentUnderIdleCrowd: another host holds 300 idle connections to the agent port,
// opening a new one whenever one is closed, and HAProxy's agent checks are still answered, in
// time for a down mark to put the server in MAINT.
func TestHAProxyAgentUnderIdleCrowd(t *testing.T) {
	haproxyBin := requireTool(t, "haproxy", "/usr/sbin/haproxy")
	bin := hacheckBin(t)
	dir := t.TempDir()
	agentPort := freePort(t)
	cfg := writeHacheckConfig(t, dir, "agent_port: "+strconv.Itoa(agentPort)+"\n")
	hc := startHacheck(t, bin, filepath.Join(dir, "spool"), cfg, 0)
	app1, app2 := newBackendApp(t, "app1"), newBackendApp(t, "app2")
	hp, _ := startHAProxyConfig(t, haproxyBin, agentTemplate, map[string]any{"Agent": agentPort, "App1": app1.port(), "App2": app2.port()})
	agent := func() (lb.Agent, bool) {
		resp, err := http.Get(hc.url("/lb/web"))
		if err != nil {
			return lb.Agent{}, false
		}
		defer resp.Body.Close()
		var snap lb.Snapshot
		if json.NewDecoder(resp.Body).Decode(&snap) != nil || len(snap.Agents) != 1 {
			return lb.Agent{}, false
		}
		return snap.Agents[0], true
	}
	waitFor(t, 10*time.Second, "HAProxy's agent counted", func() (bool, string) {
		_, ok := agent()
		return ok, ""
	})
	// rate is how many of HAProxy's polls hacheck answered a second, over 3 s from now: the
	// same measure with and without the crowd, so that a busy machine slowing HAProxy's own
	// polls slows both.
	rate := func(what string) float64 {
		t.Helper()
		first, _ := agent()
		var last lb.Agent
		waitFor(t, 20*time.Second, "3 s of HAProxy's polls "+what, func() (bool, string) {
			last, _ = agent()
			return last.LastSeen-first.LastSeen >= 3, fmt.Sprintf("%+v", last)
		})
		return float64(last.Reports-first.Reports) / (last.LastSeen - first.LastSeen)
	}
	alone := rate("alone")

	// The crowd: 300 connections from 127.0.0.2 that send nothing, kept at 300.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: time.Second}
	for range 300 {
		wg.Go(func() {
			for ctx.Err() == nil {
				c, err := d.DialContext(ctx, "tcp", "127.0.0.1:"+strconv.Itoa(agentPort))
				if err != nil {
					continue
				}
				stop := context.AfterFunc(ctx, func() { c.Close() })
				io.Copy(io.Discard, c) // until hacheck closes it
				stop()
				c.Close()
			}
		})
	}
	hc.cli(t, "hadown", "-r", "crowd", "web")
	hp.waitState(t, 10*time.Second, "app1 in MAINT by the agent, with the crowd", func(st stats) bool { return st["be_agent/app1"].status() == "MAINT" })
	crowded := rate("with the crowd")
	t.Logf("HAProxy's agent polls answered a second: %.1f alone, %.1f with 300 idle connections (agent-inter 200ms)", alone, crowded)
	if crowded < alone/2 {
		t.Errorf("with 300 idle connections, %.1f agent polls answered a second, against %.1f alone", crowded, alone)
	}
}
