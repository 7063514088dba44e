package deploy_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The disruption guard against the second operator, with real HAProxy: every change below is
// made before the load balancers have acted on the one before it, which is when a guard that
// only reads their last report lets the backend go empty.

// guard turns the guard on for a command run from a script, as these tests run them.
var guard = []string{"--guard"}

func noMark(t *testing.T, root, name string) {
	t.Helper()
	if _, err := os.Lstat(filepath.Join(root, name)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused change wrote %s (%v)", name, err)
	}
}

func postForm(t *testing.T, u string, form url.Values) (int, string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 30 * time.Second}).PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestGuardSecondOperator(t *testing.T) {
	s := startMaintSetup(t, "allow_remote_spool_changes: true\n")
	port1, port2 := strconv.Itoa(s.app1.port()), strconv.Itoa(s.app2.port())
	up := func(t *testing.T, port string) {
		t.Helper()
		if r := s.run(t, "haup", "--wait", "-P", port, "web"); r.code != 0 {
			t.Fatalf("haup --wait -P %s web: exit %d: %s", port, r.code, r.stderr)
		}
	}
	bothUp := func(t *testing.T) {
		t.Helper()
		for _, line := range []string{"be_web/app1", "be_web/app2"} {
			if st := s.statusOn(t, line); !all(st, "UP") {
				t.Fatalf("%s is %v on lb1, lb2; want UP: nothing may have taken it out", line, st)
			}
		}
	}

	// hadown -P 8080 web; hadown -P 8081 web: the second starts 0.1 s or 0.3 s after the
	// first, long before HAProxy (inter 200ms, fall 2) takes the first server out.
	for _, gap := range []time.Duration{100 * time.Millisecond, 300 * time.Millisecond} {
		t.Run(fmt.Sprintf("two hadowns %v apart", gap), func(t *testing.T) {
			start := time.Now()
			first := s.run(t, "hadown", append(guard, "-r", "e2e", "-P", port1, "web")...)
			if first.code != 0 {
				t.Fatalf("the first hadown: exit %d: %s", first.code, first.stderr)
			}
			if wait := time.Until(start.Add(gap)); wait > 0 {
				time.Sleep(wait) // the scenario's gap between two people's commands
			}
			began := time.Since(start)
			second := s.run(t, "hadown", append(guard, "-r", "e2e", "-P", port2, "web")...)
			if second.code != 4 || !strings.Contains(second.stderr, "be_web") || strings.Count(strings.TrimSpace(second.stderr), "\n") != 0 {
				t.Fatalf("the second hadown %v after the first = exit %d, stderr %q; want exit 4 and one line naming be_web", began, second.code, second.stderr)
			}
			noMark(t, s.hc.spoolRoot, "web:"+port2)
			t.Logf("second hadown %v after the first: %s", began.Round(time.Millisecond), strings.TrimSpace(second.stderr))
			up(t, port1)
			bothUp(t)
		})
	}

	t.Run("two POST guard=1 at once, one per server", func(t *testing.T) {
		down := url.Values{"status": {"down"}, "reason": {"e2e"}, "guard": {"1"}}
		for round := range 5 {
			codes, bodies := make([]int, 2), make([]string, 2)
			startLine := make(chan struct{})
			var wg sync.WaitGroup
			for i, port := range []string{port1, port2} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-startLine
					codes[i], bodies[i] = postForm(t, s.hc.url("/spool/web/"+port+"/status"), down)
				}()
			}
			close(startLine)
			wg.Wait()
			if !(codes[0] == 200 && codes[1] == 409 || codes[0] == 409 && codes[1] == 200) {
				t.Fatalf("round %d: = %v %q; want one 200 and one 409", round, codes, bodies)
			}
			for i, port := range []string{port1, port2} {
				if codes[i] != 200 {
					noMark(t, s.hc.spoolRoot, "web:"+port)
					continue
				}
				code, body := postForm(t, s.hc.url("/spool/web/"+port+"/status"), url.Values{"status": {"up"}, "wait": {"20"}})
				if code != 200 {
					t.Fatalf("round %d: up with wait: %d %q", round, code, body)
				}
			}
			bothUp(t)
		}
	})

	t.Run("the host-wide mark is guarded", func(t *testing.T) {
		r := s.run(t, "hadown", append(guard, "-r", "e2e", "all")...)
		if r.code != 4 || !strings.Contains(r.stderr, "be_solo") {
			t.Fatalf("hadown all = exit %d, stderr %q; want exit 4 naming be_solo", r.code, r.stderr)
		}
		code, body := postForm(t, s.hc.url("/spool/all/0/status"), url.Values{"status": {"down"}, "reason": {"e2e"}, "guard": {"1"}})
		if code != 409 || !strings.Contains(body, "be_solo") {
			t.Fatalf("POST /spool/all/0/status guard=1 = %d %q; want 409 naming be_solo", code, body)
		}
		noMark(t, s.hc.spoolRoot, "all")
		bothUp(t)
	})
}

// guardAgentTemplate: be_web's first server is also agent-checked (asking for its own
// instance), so that a down mark puts it in MAINT, where HAProxy stops its health checks and
// the last send-state header hacheck got from it says UP for as long as it stays there. app2 is
// checked every second, as production backends are (every 2 s by default): its last report
// still counts app1 for a while after the agent took app1 out. be_lone
// has one server, agent-checked for its weight.
var guardAgentTemplate = haproxyConfig(`
frontend fe
    bind 127.0.0.1:{{.Front}}
    use_backend be_lone if { path_beg /lone }
    default_backend be_web

backend be_web
    option httpchk GET /http/web/1/health
    http-check send-state
    server app1 127.0.0.1:{{.App1}} check port {{.Hacheck}} inter 200ms fall 2 rise 2 agent-check agent-port {{.Agent}} agent-inter 200ms agent-send "web:{{.App1}}\n"
    server app2 127.0.0.1:{{.App2}} check port {{.Hacheck}} inter 1s fall 2 rise 2

backend be_lone
    option httpchk GET /http/lone/1/health
    http-check send-state
    server lone1 127.0.0.1:{{.Lone}} check port {{.Hacheck}} inter 200ms fall 2 rise 2 agent-check agent-port {{.Agent}} agent-inter 200ms agent-send "lone\n"
`)

// The README's recipe, with agent-check on the first server: --wait returns once the agent
// said maint, and the second hadown must still be refused.
func TestGuardAfterWaitWithAgent(t *testing.T) {
	haproxyBin := requireTool(t, "haproxy", "/usr/sbin/haproxy")
	bin := hacheckBin(t)
	dir := t.TempDir()
	agentPort := freePort(t)
	cfg := writeHacheckConfig(t, dir, "agent_port: "+strconv.Itoa(agentPort)+"\n")
	s := &maintSetup{hc: startHacheck(t, bin, filepath.Join(dir, "spool"), cfg, 0),
		app1: newMaintApp(t, "app1"), app2: newMaintApp(t, "app2"), solo: newMaintApp(t, "lone1")}
	hp, _ := startHAProxyConfig(t, haproxyBin, guardAgentTemplate, map[string]any{"Node": "lb1", "Agent": agentPort, "Hacheck": s.hc.port, "App1": s.app1.port(), "App2": s.app2.port(), "Lone": s.solo.port()})
	s.lbs = []*haproxy{hp}
	hp.waitState(t, 10*time.Second, "every server UP with a 200 from hacheck", func(st stats) bool {
		return st["be_web/app1"].up() && st["be_web/app2"].up() && st["be_lone/lone1"].up()
	})
	waitFor(t, 10*time.Second, "HAProxy's first agent checks", func() (bool, string) {
		var text string
		for _, svc := range []string{"web", "lone"} {
			resp, err := http.Get(s.hc.url("/lb/" + svc))
			if err != nil {
				return false, err.Error()
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !bytes.Contains(body, []byte(`"reply":"ready`)) {
				return false, string(body)
			}
			text += string(body)
		}
		return true, text
	})
	// The guard counts a load balancer once it has checked repeatedly (app2: every second).
	s.waitEstablished(t, map[string]int{"web": 2, "lone": 1})
	port1, port2 := strconv.Itoa(s.app1.port()), strconv.Itoa(s.app2.port())

	r := s.run(t, "hadown", append(guard, "-r", "e2e", "--wait", "-P", port1, "web")...)
	if r.code != 0 {
		t.Fatalf("hadown --wait -P %s web: exit %d: %s", port1, r.code, r.stderr)
	}
	// At once, as `&&` runs it: app2's last report may still count app1 in its total.
	r = s.run(t, "hadown", append(guard, "-r", "e2e", "-P", port2, "web")...)
	if r.code != 4 || !strings.Contains(r.stderr, "be_web") {
		t.Fatalf("hadown -P %s web after hadown --wait of the other server = exit %d, stderr %q; want exit 4 naming be_web", port2, r.code, r.stderr)
	}
	noMark(t, s.hc.spoolRoot, "web:"+port2)
	hp.waitState(t, 5*time.Second, "app1 in MAINT by the agent", func(st stats) bool { return st["be_web/app1"].status() == "MAINT" })
	if st := hp.mustStats(t)["be_web/app2"]; st.status() != "UP" {
		t.Fatalf("app2 is %v", st)
	}
	// Later too, when app2's reports no longer count app1 and app1's last says UP from before
	// its MAINT.
	r = s.run(t, "hadown", append(guard, "-r", "e2e", "-P", port2, "web")...)
	if r.code != 4 || !strings.Contains(r.stderr, "be_web") {
		t.Fatalf("hadown -P %s web with app1 in MAINT = exit %d, stderr %q; want exit 4 naming be_web", port2, r.code, r.stderr)
	}

	// A weight of 0% on a backend's only server takes all of its weight.
	weight := exec.Command(filepath.Join(bin, "hacheck"), append([]string{"weight", "--spool-root", s.hc.spoolRoot, "-p", strconv.Itoa(s.hc.port)},
		append(guard, "lone", "0%")...)...)
	weight.Env = hacheckEnv()
	out, err := weight.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 4 || !bytes.Contains(out, []byte("be_lone")) {
		t.Fatalf("hacheck weight lone 0%% = %v: %s; want exit 4 naming be_lone", err, out)
	}
	noMark(t, s.hc.spoolRoot, "lone")
	if st := hp.mustStats(t)["be_lone/lone1"]; st.status() != "UP" || st["weight"] != "1" {
		t.Fatalf("lone1 is %v weight %s", st, st["weight"])
	}
}

// Just after hacheck restarts no load balancer counts yet (each must check repeatedly first):
// --wait must wait for them to count and report the new state rather than say nobody checks,
// and the guard must decide with them rather than let the last server go.
func TestWaitAndGuardJustAfterRestart(t *testing.T) {
	s := startMaintSetup(t)
	port1, port2 := strconv.Itoa(s.app1.port()), strconv.Itoa(s.app2.port())
	s.hc.stop(t, 10*time.Second)
	s.hc = startHacheck(t, s.hc.bin, s.hc.spoolRoot, s.hc.config, s.hc.port)

	r := s.run(t, "hadown", append(guard, "-v", "-r", "e2e", "--wait", "-P", port1, "web")...)
	if r.code != 0 || strings.Contains(r.stderr, "nothing to wait for") || !strings.Contains(r.stderr, "web:"+port1+": DOWN on 2 server line(s)") {
		t.Fatalf("hadown --wait -P %s web just after a restart: exit %d, stderr %q; want it to wait for both load balancers' DOWN", port1, r.code, r.stderr)
	}
	r = s.run(t, "hadown", append(guard, "-r", "e2e", "-P", port2, "web")...)
	if r.code != 4 || !strings.Contains(r.stderr, "be_web") {
		t.Fatalf("hadown --guard -P %s web after that = exit %d, stderr %q; want exit 4 naming be_web", port2, r.code, r.stderr)
	}
	noMark(t, s.hc.spoolRoot, "web:"+port2)
}
