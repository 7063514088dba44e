package main

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hacheck/hacheck/lbwait"
)

// lbServer answers GET /lb/<service> with what snapshot returns, as the running server would.
func lbServer(t *testing.T, snapshot func(service string) lbwait.Snapshot) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		service, ok := strings.CutPrefix(r.URL.Path, "/lb/")
		if !ok {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(snapshot(service))
	}))
	t.Cleanup(srv.Close)
	return strconv.Itoa(srv.Listener.Addr().(*net.TCPAddr).Port)
}

// closedPort is a loopback port nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	return port
}

func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func TestWaitBadInput(t *testing.T) {
	r := newRunner(t)
	res := r.run("hadown", "--wait", "--timeout", "soon", "-p", closedPort(t), "web")
	if res.code != exitUsage || !strings.Contains(res.stderr, `--timeout: expected duration but got "soon"`) || strings.Count(res.stderr, "\n") != 1 {
		t.Fatalf("--timeout soon = %+v, want exit 2 and one line naming the flag", res)
	}
	if marks := r.marks(t); len(marks) != 0 {
		t.Fatalf("bad flags wrote %v", marks)
	}
}

func TestWaitWithoutServer(t *testing.T) {
	r := newRunner(t)
	port := closedPort(t)
	res := r.run("hadown", "-r", "x", "--wait", "-p", port, "web")
	if res.code != exitUsage || !strings.Contains(res.stderr, "no hacheck server answers on port "+port) || !strings.Contains(res.stderr, "cannot --wait") {
		t.Fatalf("hadown --wait with no server = %+v, want exit 2 naming port %s", res, port)
	}
	if marks := r.marks(t); len(marks) != 1 || marks[0] != "web" {
		t.Fatalf("marks = %v: --wait only waits, the mark must be written", marks)
	}
	if !strings.Contains(res.stderr, "disruption guard skipped") {
		t.Fatalf("no warning that the guard could not ask anyone: %q", res.stderr)
	}
	if res := r.run("haup", "--wait", "-p", port, "web"); res.code != exitUsage || len(r.marks(t)) != 0 {
		t.Fatalf("haup --wait with no server = %+v, marks %v; want exit 2 and the mark removed", res, r.marks(t))
	}
}

func TestWaitNobodyChecks(t *testing.T) {
	r := newRunner(t)
	port := lbServer(t, func(service string) lbwait.Snapshot {
		return lbwait.Snapshot{Service: service, WindowSeconds: 30, Now: unix(time.Now())}
	})
	res := r.run("hadown", "-r", "x", "--wait", "-p", port, "web")
	if res.code != 0 || !strings.Contains(res.stderr, "no load balancer checked web recently; nothing to wait for") {
		t.Fatalf("hadown --wait, nobody checking = %+v", res)
	}
}

func TestWaitTimesOutNamingTheLaggard(t *testing.T) {
	r := newRunner(t)
	port := lbServer(t, func(service string) lbwait.Snapshot {
		now := unix(time.Now())
		return lbwait.Snapshot{Service: service, WindowSeconds: 30, Now: now, Servers: []lbwait.Server{
			{Port: 8080, Node: "lb1", Server: "be_web/app1", State: "DOWN", LastSeen: now, Weight: 1, TotalWeight: 2},
			{Port: 8080, Node: "lb2", Server: "be_web/app1", State: "UP", LastSeen: now - 5, Weight: 1, TotalWeight: 2},
		}}
	})
	res := r.run("hadown", "-r", "x", "--wait", "--timeout", "300ms", "-P", "8080", "-p", port, "web")
	if res.code != exitTimeout || !strings.Contains(res.stderr, "timed out after 300ms: not DOWN on: lb2 be_web/app1") || strings.Contains(res.stderr, "lb1") {
		t.Fatalf("= %+v, want exit 3 naming lb2 only", res)
	}
}

func TestWaitReturnsWhenSeen(t *testing.T) {
	r := newRunner(t)
	var asked atomic.Int32
	port := lbServer(t, func(service string) lbwait.Snapshot {
		now := unix(time.Now())
		state := "UP"
		if asked.Add(1) > 3 { // the guard's question, then two polls before the load balancer turns
			state = "DOWN"
		}
		return lbwait.Snapshot{Service: service, WindowSeconds: 30, Now: now, Servers: []lbwait.Server{
			{Port: 8080, Node: "lb1", Server: "be_web/app1", State: state, LastSeen: now, Weight: 1, TotalWeight: 2},
		}}
	})
	res := r.run("hadown", "-r", "x", "--wait", "-P", "8080", "-p", port, "web")
	if res.code != 0 || !strings.Contains(res.stderr, "web:8080: DOWN on 1 server line(s)") || asked.Load() != 4 {
		t.Fatalf("= %+v after %d questions", res, asked.Load())
	}
}

func TestGuard(t *testing.T) {
	port := lbServer(t, func(service string) lbwait.Snapshot {
		now := unix(time.Now())
		return lbwait.Snapshot{Service: service, WindowSeconds: 30, Now: now, Servers: []lbwait.Server{
			{Port: 8080, Node: "lb1", Server: "be_solo/solo1", State: "UP", LastSeen: now, Weight: 1, TotalWeight: 1},
			{Port: 8081, Node: "lb1", Server: "be_web/app2", State: "UP", LastSeen: now, Weight: 1, TotalWeight: 2},
		}}
	})
	r := newRunner(t)
	res := r.run("hadown", "-r", "x", "-p", port, "-P", "8080", "web")
	if res.code != exitRefused || !strings.Contains(res.stderr, "backend be_solo on load balancer lb1 would have no usable server left") || strings.Count(res.stderr, "\n") != 1 {
		t.Fatalf("hadown of a backend's last server = %+v, want exit 4 and one line", res)
	}
	if marks := r.marks(t); len(marks) != 0 {
		t.Fatalf("the refused hadown wrote %v", marks)
	}
	if res := r.run("hadown", "-r", "x", "-p", port, "-P", "8081", "web"); res.code != 0 {
		t.Fatalf("hadown of one server of two = %+v", res)
	}
	res = r.run("hadown", "-r", "x", "-p", port, "-P", "8080", "--force", "web")
	if res.code != 0 || !strings.Contains(res.stderr, `"force":true`) {
		t.Fatalf("hadown --force = %+v, want it written and the audit line saying force", res)
	}
	if res := r.run("haup", "-p", port, "-P", "8080", "web"); res.code != 0 {
		t.Fatalf("haup is never guarded: %+v", res)
	}
}

func TestAuditLineOfTheCommand(t *testing.T) {
	r := newRunner(t)
	port := closedPort(t)
	res := r.run("hadown", "-r", "kernel", "-p", port, "-P", "8080", "web")
	var line map[string]any
	for _, l := range strings.Split(res.stderr, "\n") {
		if strings.Contains(l, `"spool change"`) {
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatal(err)
			}
		}
	}
	for k, v := range map[string]any{"action": "down", "service": "web", "port": 8080.0, "reason": "kernel", "origin": "cli", "sudo_user": "alice", "expiration": nil} {
		if got, ok := line[k]; !ok || got != v {
			t.Errorf("audit line %s = %v, want %v (line %v)", k, got, v, line)
		}
	}
	if _, ok := line["uid"]; !ok {
		t.Errorf("audit line has no uid: %v", line)
	}
}
