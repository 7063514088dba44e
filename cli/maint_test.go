package cli

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hacheck/hacheck/lb"
)

// lbServer answers GET /lb/<service> with what snapshot returns, as the running server would.
func lbServer(t *testing.T, snapshot func(service string) lb.Snapshot) string {
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
	res := r.run("hadown", "-r", "x", "--wait", "--guard", "-v", "-p", port, "web")
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
	port := lbServer(t, func(service string) lb.Snapshot {
		return lb.Snapshot{Service: service, WindowSeconds: 30, Now: unix(time.Now())}
	})
	res := r.run("hadown", "-r", "x", "--wait", "-v", "-p", port, "web")
	if res.code != 0 || !strings.Contains(res.stderr, "no load balancer checked web recently; nothing to wait for") {
		t.Fatalf("hadown --wait, nobody checking = %+v", res)
	}
	// Someone who checked once (an nc, a curl with a copied header) is not waited on, but said.
	port = lbServer(t, func(service string) lb.Snapshot {
		return lb.Snapshot{Service: service, WindowSeconds: 30, Now: unix(time.Now()), Unconfirmed: 1}
	})
	res = r.run("haup", "--wait", "-v", "-p", port, "web")
	if res.code != 0 || !strings.Contains(res.stderr, "nothing to wait for (1 reporter(s) seen that have not checked repeatedly") {
		t.Fatalf("haup --wait, one unconfirmed reporter = %+v", res)
	}
}

// startingLB answers as a server that just restarted while a load balancer checks web:8080
// every 200 ms: its line does not count for the first few answers, then counts, UP at first
// and DOWN after a while, as HAProxy's fall makes it.
func startingLB(t *testing.T) string {
	t.Helper()
	var mu sync.Mutex
	asked := 0
	return lbServer(t, func(service string) lb.Snapshot {
		mu.Lock()
		defer mu.Unlock()
		asked++
		now := unix(time.Now())
		snap := lb.Snapshot{Service: service, WindowSeconds: 30, Now: now, Servers: []lb.Server{}, Agents: []lb.Agent{}, MinRemainingWeight: 1}
		if asked <= 5 {
			snap.Unconfirmed, snap.UnconfirmedLastSeen = 1, now-0.1
			return snap
		}
		state, since := "UP", now-3
		if asked > 10 {
			state, since = "DOWN", now-1
		}
		snap.Servers = []lb.Server{{Port: 8080, Node: "lb1", Source: "10.0.0.1", Server: "be_web/app1", State: state,
			Weight: 1, TotalWeight: 1, LastSeen: now, StateSince: since, IntervalSeconds: 0.2, Reports: 10}}
		return snap
	})
}

// Just after hacheck restarted nobody counts yet: --wait waits for the load balancer checking
// to count and report the new state, rather than say nobody checks; the guard waits to decide
// with it.
func TestWaitAndGuardJustAfterRestart(t *testing.T) {
	r := newRunner(t)
	res := r.run("hadown", "-r", "x", "--wait", "-v", "-p", startingLB(t), "-P", "8080", "web")
	if res.code != 0 || strings.Contains(res.stderr, "nothing to wait for") || !strings.Contains(res.stderr, "web:8080: DOWN on 1 server line(s)") {
		t.Fatalf("hadown --wait just after a restart = %+v; want it to wait for the load balancer's DOWN", res)
	}
	res = r.run("hadown", "-r", "x", "--guard", "-v", "-p", startingLB(t), "-P", "8081", "other")
	if res.code != 0 || !strings.Contains(res.stderr, "disruption guard waited") {
		t.Fatalf("hadown --guard of a service whose reporter counts later = %+v; want it allowed after waiting", res)
	}
	res = r.run("hadown", "-r", "x", "--guard", "-v", "-p", startingLB(t), "-P", "8080", "solo")
	if res.code != exitRefused || !strings.Contains(res.stderr, "be_web") {
		t.Fatalf("hadown --guard of the last server just after a restart = %+v; want exit 4 naming be_web", res)
	}
}

func TestWaitTimesOutNamingTheLaggard(t *testing.T) {
	r := newRunner(t)
	port := lbServer(t, func(service string) lb.Snapshot {
		now := unix(time.Now())
		return lb.Snapshot{Service: service, WindowSeconds: 30, Now: now, Servers: []lb.Server{
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
	port := lbServer(t, func(service string) lb.Snapshot {
		now := unix(time.Now())
		state := "UP"
		if asked.Add(1) > 3 { // the guard's question, then two polls before the load balancer turns
			state = "DOWN"
		}
		return lb.Snapshot{Service: service, WindowSeconds: 30, Now: now, Servers: []lb.Server{
			{Port: 8080, Node: "lb1", Server: "be_web/app1", State: state, LastSeen: now, Weight: 1, TotalWeight: 2},
		}}
	})
	res := r.run("hadown", "-r", "x", "--wait", "--guard", "-v", "-P", "8080", "-p", port, "web")
	if res.code != 0 || !strings.Contains(res.stderr, "web:8080: DOWN on 1 server line(s)") || asked.Load() != 4 {
		t.Fatalf("= %+v after %d questions", res, asked.Load())
	}
}

func TestGuard(t *testing.T) {
	port := lbServer(t, func(service string) lb.Snapshot {
		now := unix(time.Now())
		return lb.Snapshot{Service: service, WindowSeconds: 30, Now: now, Servers: []lb.Server{
			{Port: 8080, Node: "lb1", Server: "be_solo/solo1", State: "UP", LastSeen: now, Weight: 1, TotalWeight: 1},
			{Port: 8081, Node: "lb1", Server: "be_web/app2", State: "UP", LastSeen: now, Weight: 1, TotalWeight: 2},
		}}
	})
	r := newRunner(t)
	r.interactive = true // a person at a terminal: the guard is on without --guard
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
	if res.code != 0 || len(r.records) == 0 || !strings.Contains(r.records[len(r.records)-1], `"force":true`) {
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
	if res.code != 0 || res.stdout != "" || res.stderr != "" {
		t.Fatalf("hadown = %+v, want exit 0 and nothing printed", res)
	}
	if len(r.records) != 1 {
		t.Fatalf("system log records = %q, want one", r.records)
	}
	var line map[string]any
	if err := json.Unmarshal([]byte(r.records[0]), &line); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]any{"action": "down", "service": "web", "port": 8080.0, "reason": "kernel", "origin": "cli", "sudo_user": "alice", "expiration": nil} {
		if got, ok := line[k]; !ok || got != v {
			t.Errorf("audit record %s = %v, want %v (record %v)", k, got, v, line)
		}
	}
	if _, ok := line["uid"]; !ok {
		t.Errorf("audit record has no uid: %v", line)
	}
	// A reason cannot break a record in two.
	if res := r.run("hadown", "-r", "kernel\nupgrade", "-p", port, "api"); res.code != 0 || len(r.records) != 2 || strings.Contains(r.records[1], "\n") {
		t.Fatalf("hadown -r with a newline = %+v, records %q; want one record on one line", res, r.records)
	}
	r.records = r.records[:1]
	// -v shows the same record on stderr.
	res = r.run("haup", "-v", "-p", port, "-P", "8080", "web")
	if res.code != 0 || !strings.Contains(res.stderr, `"action":"up"`) || !strings.Contains(r.records[1], `"action":"up"`) {
		t.Fatalf("haup -v = %+v, records %q", res, r.records)
	}
}

func TestDrainShowsApartFromDown(t *testing.T) {
	r := newRunner(t)
	port := closedPort(t)
	if res := r.run("hadown", "--drain", "-r", "deploy", "-p", port, "web"); res.code != 0 {
		t.Fatalf("hadown --drain = %+v", res)
	}
	data, err := os.ReadFile(filepath.Join(r.root, "web"))
	if err != nil || !strings.Contains(string(data), `"drain":true`) {
		t.Fatalf("mark = %s (%v), want \"drain\": true in it", data, err)
	}
	if res := r.run("hastatus", "web"); res.code != 1 || res.stdout != "DRAIN\tweb\tdeploy\n" {
		t.Fatalf("hastatus = %+v, want DRAIN and exit 1", res)
	}
	if res := r.run("hashowdowned"); !strings.HasPrefix(res.stdout, "web\tport=0\tdeploy\tdrain since ") {
		t.Fatalf("hashowdowned = %+v", res)
	}
	res := r.run("hashowdowned", "--json")
	var marks []markJSON
	if err := json.Unmarshal([]byte(res.stdout), &marks); err != nil || len(marks) != 1 || marks[0].Kind != "drain" || !marks[0].Drain {
		t.Fatalf("hashowdowned --json = %s (%v)", res.stdout, err)
	}
	res = r.run("hastatus", "--json", "web")
	if !strings.Contains(res.stdout, `"state":"DRAIN"`) {
		t.Fatalf("hastatus --json = %s", res.stdout)
	}
	// A plain hadown over it is a down mark again.
	if res := r.run("hadown", "-r", "deploy", "-p", port, "web"); res.code != 0 {
		t.Fatal(res)
	}
	if res := r.run("hastatus", "web"); res.stdout != "DOWN\tweb\tdeploy\n" {
		t.Fatalf("hastatus after hadown over a drain = %+v", res)
	}
}

func TestWeight(t *testing.T) {
	r := newRunner(t)
	if res := r.run("hacheck", "weight", "web", "30%"); res.code != 0 {
		t.Fatalf("weight = %+v", res)
	}
	if res := r.run("hastatus", "web"); res.code != 0 || res.stdout != "UP\tweb\tweight 30%\n" {
		t.Fatalf("hastatus with a weight = %+v, want UP (a weight holds nothing down)", res)
	}
	if res := r.run("hashowdowned"); !strings.HasPrefix(res.stdout, "web\tport=0\talice\tweight 30% since ") {
		t.Fatalf("hashowdowned = %+v", res)
	}
	if res := r.run("hacheck", "weight", "-P", "8080", "web", "256"); res.code != 0 {
		t.Fatalf("weight 256 = %+v", res)
	}
	if res := r.run("hacheck", "weight", "api", "-1%"); res.code != exitUsage || strings.Count(res.stderr, "\n") != 1 {
		t.Errorf("weight -1%% = %+v, want exit 2 and one line", res)
	}
	for _, bad := range []string{"257%", "12.5%", "lots", "%", "30%%", "1e2"} {
		res := r.run("hacheck", "weight", "api", bad)
		if res.code != exitUsage || !strings.Contains(res.stderr, "must be a whole percentage from 0% to 256%") || strings.Count(res.stderr, "\n") != 1 {
			t.Errorf("weight %q = %+v, want exit 2 and one line", bad, res)
		}
	}
	if res := r.run("hacheck", "weight", "all", "50%"); res.code != exitUsage {
		t.Errorf("weight all = %+v, want exit 2", res)
	}
	if _, err := os.Stat(filepath.Join(r.root, "api")); err == nil {
		t.Fatal("a bad weight wrote a mark")
	}
	// A weight does not replace a down mark.
	if res := r.run("hadown", "-r", "disk", "-p", closedPort(t), "db"); res.code != 0 {
		t.Fatal(res)
	}
	if res := r.run("hacheck", "weight", "db", "50%"); res.code == 0 || !strings.Contains(res.stderr, "db is marked down (disk); haup it first") {
		t.Fatalf("weight over a down mark = %+v", res)
	}
	if res := r.run("haup", "-p", closedPort(t), "web"); res.code != 0 {
		t.Fatal(res)
	}
	if res := r.run("hastatus", "web"); res.stdout != "UP\tweb\n" {
		t.Fatalf("hastatus after haup = %+v", res)
	}
}

func FuzzParsePercent(f *testing.F) {
	for _, s := range []string{"30%", "0", "256%", "257%", "-1", "%", "1e2", " 5%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parsePercent(s)
		if err == nil && (n < 0 || n > 256) {
			t.Fatalf("parsePercent(%q) = %d, outside 0-256", s, n)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Fatalf("parsePercent(%q): error of more than one line: %q", s, err)
		}
	})
}
