package deploy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hacheck/hacheck/lb"
)

// maintApp is one instance of a service behind the load balancers: /health passes, /slow holds
// the request until released (a session in flight), anything else says which instance answered.
type maintApp struct {
	name    string
	srv     *httptest.Server
	entered chan struct{} // a /slow request arrived
	release chan struct{} // closing it lets every /slow request finish
}

func newMaintApp(t *testing.T, name string) *maintApp {
	t.Helper()
	a := &maintApp{name: name, entered: make(chan struct{}, 16), release: make(chan struct{})}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/health":
			fmt.Fprintf(w, "%s ok\n", name)
		case "/slow":
			a.entered <- struct{}{}
			select {
			case <-a.release:
			case <-r.Context().Done():
				return
			}
			fmt.Fprint(w, name)
		default:
			fmt.Fprint(w, name)
		}
	}))
	t.Cleanup(func() {
		select {
		case <-a.release:
		default:
			close(a.release)
		}
		a.srv.Close()
	})
	return a
}

func (a *maintApp) port() int {
	_, p, _ := strings.Cut(a.srv.Listener.Addr().String(), ":")
	n, _ := strconv.Atoi(p)
	return n
}

// The load balancers of the safe-maintenance test. Both check every server through hacheck with
// send-state (so hacheck learns each one's node name, server line and state) and
// disable-on-404 (so a drain mark's 404 puts the server in NOLB). /slow is sent to app1, to
// hold a session on it.
var maintTemplate = haproxyConfig(`
frontend fe
    bind 127.0.0.1:{{.Front}}
    use_backend be_solo if { path_beg /solo }
    default_backend be_web

backend be_web
    balance roundrobin
    option httpchk GET /http/web/1/health
    http-check send-state
    http-check disable-on-404
    use-server app1 if { path_beg /slow }
    server app1 127.0.0.1:{{.App1}} check port {{.Hacheck}} inter 200ms fall 2 rise 2
    server app2 127.0.0.1:{{.App2}} check port {{.Hacheck}} inter 200ms fall 2 rise 2

backend be_solo
    option httpchk GET /http/solo/1/health
    http-check send-state
    http-check disable-on-404
    server solo1 127.0.0.1:{{.Solo}} check port {{.Hacheck}} inter 200ms fall 2 rise 2
`)

// maintSetup is hacheck behind two HAProxy instances, lb1 and lb2.
type maintSetup struct {
	hc               *hacheck
	lbs              []*haproxy
	fronts           []int
	app1, app2, solo *maintApp
}

// startMaintSetup starts it all; extraConfig is appended to hacheck's config file.
func startMaintSetup(t *testing.T, extraConfig ...string) *maintSetup {
	t.Helper()
	haproxyBin := requireTool(t, "haproxy", "/usr/sbin/haproxy")
	bin := hacheckBin(t)
	dir := t.TempDir()
	s := &maintSetup{app1: newMaintApp(t, "app1"), app2: newMaintApp(t, "app2"), solo: newMaintApp(t, "solo1")}
	s.hc = startHacheck(t, bin, filepath.Join(dir, "spool"), writeHacheckConfig(t, dir, extraConfig...), 0)
	for _, node := range []string{"lb1", "lb2"} {
		hp, front := startHAProxyConfig(t, haproxyBin, maintTemplate, map[string]any{"Node": node, "Timeout": "30s",
			"Hacheck": s.hc.port, "App1": s.app1.port(), "App2": s.app2.port(), "Solo": s.solo.port()})
		s.lbs = append(s.lbs, hp)
		s.fronts = append(s.fronts, front)
	}
	// hacheck knows a load balancer only from its checks: every line must have been checked
	// (a 200 seen) and be UP on both before any step.
	for i, hp := range s.lbs {
		hp.waitState(t, 10*time.Second, fmt.Sprintf("lb%d: every server UP with a 200 from hacheck", i+1), func(st stats) bool {
			for _, k := range []string{"be_web/app1", "be_web/app2", "be_solo/solo1"} {
				if !st[k].up() || st[k]["check_code"] != "200" {
					return false
				}
			}
			return true
		})
	}
	// ... and have checked repeatedly, which is when a load balancer counts.
	s.waitEstablished(t, map[string]int{"web": 4, "solo": 2})
	return s
}

// waitEstablished waits until GET /lb/<service> lists the number of server lines given for each
// service: the load balancers' lines, once each has checked repeatedly.
func (s *maintSetup) waitEstablished(t *testing.T, lines map[string]int) {
	t.Helper()
	for svc, n := range lines {
		waitFor(t, 10*time.Second, fmt.Sprintf("GET /lb/%s lists %d lines", svc, n), func() (bool, string) {
			snap, err := s.lbSnapshot(svc)
			if err != nil {
				return false, err.Error()
			}
			return len(snap.Servers) == n, fmt.Sprintf("%+v", snap)
		})
	}
}

// lbSnapshot is GET /lb/<service>, decoded as the CLI decodes it.
func (s *maintSetup) lbSnapshot(service string) (lb.Snapshot, error) {
	var snap lb.Snapshot
	resp, err := http.Get(s.hc.url("/lb/" + service))
	if err != nil {
		return snap, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&snap)
	return snap, err
}

// cliResult is how one command ended.
type cliRun struct {
	code           int
	stdout, stderr string
	took           time.Duration
}

// run runs a multi-call command against the setup's spool and server and returns how it ended.
func (s *maintSetup) run(t *testing.T, name string, args ...string) cliRun {
	t.Helper()
	cmd := s.command(name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	r := cliRun{stdout: stdout.String(), stderr: stderr.String(), took: time.Since(start)}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatalf("%s: %v", name, err)
	}
	return r
}

func (s *maintSetup) command(name string, args ...string) *exec.Cmd {
	args = append([]string{"--spool-root", s.hc.spoolRoot, "-p", strconv.Itoa(s.hc.port)}, args...)
	cmd := exec.Command(filepath.Join(s.hc.bin, name), args...)
	cmd.Env = hacheckEnv()
	return cmd
}

// statusOn reads the status column of one server line on every load balancer at once.
func (s *maintSetup) statusOn(t *testing.T, line string) []string {
	t.Helper()
	var out []string
	for _, hp := range s.lbs {
		if hp.exited() {
			out = append(out, "(stopped)")
			continue
		}
		out = append(out, hp.mustStats(t)[line].status())
	}
	return out
}

func all(states []string, want string) bool {
	return !slices.ContainsFunc(states, func(s string) bool { return s != want })
}

// TestMaintenanceWait drives the safe-maintenance commands against two real HAProxy instances
// and checks, the moment each command returns, what both load balancers' stats sockets say.
func TestMaintenanceWait(t *testing.T) {
	s := startMaintSetup(t)
	port1 := strconv.Itoa(s.app1.port())
	ok := func(name string, r cliRun) {
		t.Helper()
		if r.code != 0 {
			t.Fatalf("%s exited %d after %v\nstdout: %s\nstderr: %s", name, r.code, r.took, r.stdout, r.stderr)
		}
	}
	backUp := func(t *testing.T) {
		t.Helper()
		r := s.run(t, "haup", "--wait", "-P", port1, "web")
		ok("haup --wait", r)
		if st := s.statusOn(t, "be_web/app1"); !all(st, "UP") {
			t.Fatalf("haup --wait returned after %v, but app1 is %v on lb1, lb2", r.took, st)
		}
	}

	t.Run("hadown --wait returns once both load balancers hold it DOWN", func(t *testing.T) {
		r := s.run(t, "hadown", "-r", "e2e", "--wait", "-P", port1, "web")
		app1, app2 := s.statusOn(t, "be_web/app1"), s.statusOn(t, "be_web/app2")
		ok("hadown --wait", r)
		if !all(app1, "DOWN") || !all(app2, "UP") {
			t.Fatalf("hadown --wait returned after %v, but app1 is %v and app2 %v on lb1, lb2\nstderr: %s", r.took, app1, app2, r.stderr)
		}
		t.Logf("hadown --wait took %v: %s", r.took, strings.TrimSpace(r.stderr))
	})
	t.Run("haup --wait returns once both hold it UP", backUp)

	t.Run("hadown --drain --wait returns once both hold it NOLB", func(t *testing.T) {
		r := s.run(t, "hadown", "-r", "e2e", "--drain", "--wait", "-P", port1, "web")
		app1 := s.statusOn(t, "be_web/app1")
		ok("hadown --drain --wait", r)
		if !all(app1, "NOLB") {
			t.Fatalf("hadown --drain --wait returned after %v, but app1 is %v on lb1, lb2\nstderr: %s", r.took, app1, r.stderr)
		}
		backUp(t)
	})

	t.Run("--sessions waits for the session in flight", func(t *testing.T) {
		client := &http.Client{Timeout: 30 * time.Second}
		finished := make(chan time.Time, 1)
		go func() {
			resp, err := client.Get("http://127.0.0.1:" + strconv.Itoa(s.fronts[0]) + "/slow")
			if err == nil {
				resp.Body.Close()
			}
			finished <- time.Now()
		}()
		select {
		case <-s.app1.entered:
		case <-time.After(10 * time.Second):
			t.Fatal("the slow request did not reach app1 through lb1")
		}
		cmd := s.command("hadown", "-r", "e2e", "--wait", "--sessions", "-P", port1, "web")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		// Both load balancers take app1 DOWN, and the command must still be waiting: lb1 has
		// a session on it.
		for i, hp := range s.lbs {
			hp.waitState(t, 10*time.Second, fmt.Sprintf("lb%d: app1 DOWN", i+1), func(st stats) bool { return st["be_web/app1"].status() == "DOWN" })
		}
		if n := s.lbs[0].mustStats(t)["be_web/app1"].num("scur"); n != 1 {
			t.Fatalf("lb1 shows %d sessions on app1, want the slow request's 1", n)
		}
		select {
		case err := <-exited:
			t.Fatalf("hadown --wait --sessions returned (%v) with a session in flight on lb1\nstderr: %s", err, stderr.String())
		default:
		}
		close(s.app1.release)
		done := <-finished
		select {
		case err := <-exited:
			returned := time.Now()
			if err != nil {
				t.Fatalf("hadown --wait --sessions: %v\nstderr: %s", err, stderr.String())
			}
			t.Logf("the session finished; hadown --wait --sessions returned %v later", returned.Sub(done).Round(time.Millisecond))
		case <-time.After(20 * time.Second):
			t.Fatalf("hadown --wait --sessions still waiting 20s after the session finished\nstderr: %s", stderr.String())
		}
		backUp(t)
	})

	t.Run("the guard refuses to take a backend's last server", func(t *testing.T) {
		// Run by a test, not at a terminal: a script gets the guard only when it asks.
		r := s.run(t, "hadown", "--guard", "-r", "e2e", "solo")
		if r.code != 4 || !strings.Contains(r.stderr, "be_solo") || !strings.Contains(r.stderr, "lb1") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Fatalf("hadown solo (the only server of be_solo) = exit %d, stderr %q; want exit 4 and one line naming be_solo and lb1", r.code, r.stderr)
		}
		if _, err := os.Lstat(filepath.Join(s.hc.spoolRoot, "solo")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("the refused hadown wrote a mark (%v), want nothing", err)
		}
		r = s.run(t, "hadown", "-r", "e2e", "--force", "--wait", "solo")
		ok("hadown --force --wait solo", r)
		if st := s.statusOn(t, "be_solo/solo1"); !all(st, "DOWN") {
			t.Fatalf("hadown --force --wait solo returned, but solo1 is %v", st)
		}
		ok("haup --wait solo", s.run(t, "haup", "--wait", "solo"))
	})

	t.Run("the host-wide mark waits for every service checked", func(t *testing.T) {
		r := s.run(t, "hadown", "-r", "e2e", "--wait", "all")
		ok("hadown --wait all", r)
		for _, line := range []string{"be_web/app1", "be_web/app2", "be_solo/solo1"} {
			if st := s.statusOn(t, line); !all(st, "DOWN") {
				t.Fatalf("hadown --wait all returned after %v, but %s is %v\nstderr: %s", r.took, line, st, r.stderr)
			}
		}
		r = s.run(t, "haup", "--wait", "all")
		ok("haup --wait all", r)
		for _, line := range []string{"be_web/app1", "be_web/app2", "be_solo/solo1"} {
			if st := s.statusOn(t, line); !all(st, "UP") {
				t.Fatalf("haup --wait all returned after %v, but %s is %v", r.took, line, st)
			}
		}
	})

	t.Run("a load balancer that stopped is named at the timeout", func(t *testing.T) {
		s.lbs[1].stop(t, 10*time.Second)
		r := s.run(t, "hadown", "-r", "e2e", "--wait", "--timeout", "3s", "-P", port1, "web")
		if r.code != 3 || !strings.Contains(r.stderr, "lb2 be_web/app1") || strings.Contains(r.stderr, "lb1") {
			t.Fatalf("hadown --wait with lb2 stopped = exit %d after %v, stderr %q; want exit 3 naming lb2's be_web/app1 only", r.code, r.took, r.stderr)
		}
		if _, err := os.Stat(filepath.Join(s.hc.spoolRoot, "web:"+port1)); err != nil {
			t.Fatalf("the mark must be written whatever --wait says: %v", err)
		}
	})
}

// TestMaintenanceWaitTiming measures how long `hadown --wait` takes against the two load
// balancers (inter 200ms fall 2): the figure quoted in the README. A measurement, not a test:
// it runs only with HACHECK_MAINT_RUNS set to the number of runs.
func TestMaintenanceWaitTiming(t *testing.T) {
	runs, _ := strconv.Atoi(os.Getenv("HACHECK_MAINT_RUNS"))
	if runs <= 0 {
		t.Skip("set HACHECK_MAINT_RUNS=20 to measure")
	}
	s := startMaintSetup(t)
	port1 := strconv.Itoa(s.app1.port())
	var took []time.Duration
	for range runs {
		r := s.run(t, "hadown", "-r", "timing", "--wait", "-P", port1, "web")
		if r.code != 0 {
			t.Fatalf("hadown --wait: exit %d: %s", r.code, r.stderr)
		}
		took = append(took, r.took)
		if r := s.run(t, "haup", "--wait", "-P", port1, "web"); r.code != 0 {
			t.Fatalf("haup --wait: exit %d: %s", r.code, r.stderr)
		}
	}
	slices.Sort(took)
	t.Logf("hadown --wait over %d runs (inter 200ms fall 2, two HAProxy): median %v, min %v, max %v, all %v",
		runs, took[len(took)/2].Round(time.Millisecond), took[0].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond), took)
}

// TestMaintenanceWaitAgent: --wait on a service that a load balancer knows only through the
// agent check. The load balancer has seen a change once it fetched a reply written after it;
// HAProxy acts on a reply as it reads it, so the state shows a moment later at most.
func TestMaintenanceWaitAgent(t *testing.T) {
	haproxyBin := requireTool(t, "haproxy", "/usr/sbin/haproxy")
	bin := hacheckBin(t)
	dir := t.TempDir()
	agentPort := freePort(t)
	cfg := writeHacheckConfig(t, dir, "agent_port: "+strconv.Itoa(agentPort)+"\n")
	s := &maintSetup{hc: startHacheck(t, bin, filepath.Join(dir, "spool"), cfg, 0), app1: newMaintApp(t, "app1"), app2: newMaintApp(t, "app2")}
	hp, _ := startHAProxyConfig(t, haproxyBin, agentTemplate, map[string]any{"Agent": agentPort, "App1": s.app1.port(), "App2": s.app2.port()})
	const web = "be_agent/app1"
	is := func(status, weight string) func(stats) bool {
		return func(st stats) bool { return st[web].status() == status && st[web]["weight"] == weight }
	}
	hp.waitState(t, 10*time.Second, "app1 UP at full weight", is("UP", "10"))
	// hacheck knows the load balancer once it asked the agent about web repeatedly.
	waitFor(t, 10*time.Second, "HAProxy's agent checks", func() (bool, string) {
		resp, err := http.Get(s.hc.url("/lb/web"))
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return bytes.Contains(body, []byte(`"reply":"ready`)), string(body)
	})

	for _, step := range []struct {
		name           string
		args           []string
		status, weight string
	}{
		// -v: what --wait found is said only when asked.
		{"hadown --wait: MAINT", []string{"hadown", "-v", "-r", "e2e", "--wait", "web"}, "MAINT", "10"},
		{"haup --wait: UP", []string{"haup", "-v", "--wait", "web"}, "UP", "10"},
		{"hadown --drain --wait: DRAIN", []string{"hadown", "-v", "-r", "e2e", "--drain", "--wait", "web"}, "DRAIN (agent)", "10"},
		{"haup --wait: UP again", []string{"haup", "-v", "--wait", "web"}, "UP", "10"},
	} {
		r := s.run(t, step.args[0], step.args[1:]...)
		if r.code != 0 {
			t.Fatalf("%s: exit %d after %v: %s", step.name, r.code, r.took, r.stderr)
		}
		if !strings.Contains(r.stderr, "1 agent(s)") {
			t.Fatalf("%s: waited on no agent: %s", step.name, r.stderr)
		}
		hp.waitState(t, 2*time.Second, step.name+" (HAProxy acts on the reply it fetched)", is(step.status, step.weight))
	}

	// A weight: HAProxy gives the server that share of its configured weight.
	weight := exec.Command(filepath.Join(s.hc.bin, "hacheck"), "weight", "--spool-root", s.hc.spoolRoot, "web", "30%")
	weight.Env = hacheckEnv()
	if out, err := weight.CombinedOutput(); err != nil {
		t.Fatalf("hacheck weight: %v: %s", err, out)
	}
	hp.waitState(t, 10*time.Second, "app1 UP at 30% of weight 10", is("UP", "3"))
	if r := s.run(t, "haup", "--wait", "web"); r.code != 0 {
		t.Fatalf("haup --wait after the weight: exit %d: %s", r.code, r.stderr)
	}
	hp.waitState(t, 2*time.Second, "app1 back at full weight", is("UP", "10"))
}
