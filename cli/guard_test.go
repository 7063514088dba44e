package cli

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hacheck/hacheck/lb"
)

// fakeLBs answers /lb/<service> and /recent as the running server would, from lines that never
// change: load balancers that have not yet acted on anything this host wrote.
func fakeLBs(t *testing.T, lines map[string][]lb.Server) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := unix(time.Now())
		if r.URL.Path == "/recent" {
			var seen [][2]any
			for svc := range lines {
				seen = append(seen, [2]any{svc, map[string]any{"code": 200, "remote_ip": "127.0.0.1", "ts": now}})
			}
			json.NewEncoder(w).Encode(map[string]any{"seen_services": seen})
			return
		}
		service, ok := strings.CutPrefix(r.URL.Path, "/lb/")
		if !ok {
			http.NotFound(w, r)
			return
		}
		snap := lb.Snapshot{Service: service, WindowSeconds: 30, Now: now, Servers: []lb.Server{}, Agents: []lb.Agent{}}
		for _, s := range lines[service] {
			s.LastSeen = now
			snap.Servers = append(snap.Servers, s)
		}
		json.NewEncoder(w).Encode(snap)
	}))
	t.Cleanup(srv.Close)
	return strconv.Itoa(srv.Listener.Addr().(*net.TCPAddr).Port)
}

// twoServers: web has two instances on this host, the two servers of be_web; lone is the only
// server of be_lone.
func twoServers(t *testing.T) string {
	return fakeLBs(t, map[string][]lb.Server{
		"web": {
			{Port: 8080, Node: "lb1", Source: "10.0.0.1", Server: "be_web/app1", State: "UP", Weight: 1, TotalWeight: 2},
			{Port: 8081, Node: "lb1", Source: "10.0.0.1", Server: "be_web/app2", State: "UP", Weight: 1, TotalWeight: 2},
		},
		"lone": {{Port: 9090, Node: "lb1", Source: "10.0.0.1", Server: "be_lone/lone1", State: "UP", Weight: 1, TotalWeight: 1}},
	})
}

func refused(t *testing.T, what string, res cliResult, backend string) {
	t.Helper()
	if res.code != exitRefused || !strings.Contains(res.stderr, "backend "+backend+" on load balancer lb1") || strings.Count(res.stderr, "\n") != 1 {
		t.Fatalf("%s = %+v, want exit 4 and one line naming %s", what, res, backend)
	}
}

// The second operator, or the same one a moment later: the load balancers still report both
// servers UP, but this host's spool already takes one out.
func TestGuardCountsWhatThisHostDid(t *testing.T) {
	for _, first := range [][]string{
		{"hadown", "-r", "x", "-P", "8080", "web"},
		{"hadown", "-r", "x", "--drain", "-P", "8080", "web"},
		{"hacheck", "weight", "-P", "8080", "web", "0%"},
		{"hadown", "-r", "x", "--force", "-P", "8080", "web"},
	} {
		t.Run(strings.Join(first, " "), func(t *testing.T) {
			r := newRunner(t)
			r.interactive = true // a person at a terminal: the guard is on
			port := twoServers(t)
			if res := r.run(first[0], append(first[1:len(first):len(first)], "-p", port)...); res.code != 0 {
				t.Fatalf("the first change: %+v", res)
			}
			res := r.run("hadown", "-r", "x", "-p", port, "-P", "8081", "web")
			refused(t, "hadown of the other server", res, "be_web")
			if !strings.Contains(res.stderr, "already on this host") {
				t.Fatalf("the refusal does not say a mark of this host was counted: %q", res.stderr)
			}
			if marks := r.marks(t); len(marks) != 1 || marks[0] != "web:8080" {
				t.Fatalf("marks = %v, want web:8080 only", marks)
			}
			// haup is never guarded, and once the first is back the second may go.
			if res := r.run("haup", "-p", port, "-P", "8080", "web"); res.code != 0 {
				t.Fatalf("haup: %+v", res)
			}
			if res := r.run("hadown", "-r", "x", "-p", port, "-P", "8081", "web"); res.code != 0 {
				t.Fatalf("hadown of the other server once the first is back: %+v", res)
			}
		})
	}
}

// The host-wide mark and weights that take all of a server's weight are guarded like any down.
func TestGuardAllAndWeights(t *testing.T) {
	r := newRunner(t)
	port := twoServers(t)
	// A script asks for the guard.
	refused(t, "hadown all", r.run("hadown", "--guard", "-r", "x", "-p", port, "all"), "be_lone")
	refused(t, "hacheck weight lone 0%", r.run("hacheck", "weight", "--guard", "-p", port, "lone", "0%"), "be_lone")
	// HAProxy scales weight 1 by 30% to 0.
	refused(t, "hacheck weight lone 30%", r.run("hacheck", "weight", "--guard", "-p", port, "lone", "30%"), "be_lone")
	refused(t, "hadown two services", r.run("hadown", "--guard", "-r", "x", "-p", port, "web", "lone"), "be_lone")
	if marks := r.marks(t); len(marks) != 0 {
		t.Fatalf("refused changes wrote %v", marks)
	}
	if res := r.run("hacheck", "weight", "--guard", "-p", port, "lone", "200%"); res.code != 0 {
		t.Fatalf("a weight that takes nothing away: %+v", res)
	}
	if res := r.run("hacheck", "weight", "--force", "-p", port, "lone", "0%"); res.code != 0 || len(r.records) == 0 || !strings.Contains(r.records[len(r.records)-1], `"force":true`) {
		t.Fatalf("hacheck weight --force = %+v, want it written and the audit record saying force", res)
	}
	// Without a terminal and without --guard, a script gets what the Python tools did.
	if res := r.run("hadown", "-r", "x", "-p", port, "-P", "8080", "web"); res.code != 0 {
		t.Fatalf("a script's hadown without --guard = %+v, want it written", res)
	}
}

// A reason that would make the mark larger than readers take is refused: exit 2, nothing
// written (written, the unreadable mark would hold the service down instead of weighting it).
func TestReasonTooLongForReaders(t *testing.T) {
	r := newRunner(t)
	long := strings.Repeat("x", 70<<10)
	for _, argv := range [][]string{
		{"hacheck", "weight", "-p", closedPort(t), "-r", long, "lw", "30%"},
		{"hadown", "-p", closedPort(t), "-r", long, "lw"},
	} {
		res := r.run(argv[0], argv[1:]...)
		if res.code != exitUsage || !strings.Contains(res.stderr, "shorten the reason") || strings.Count(res.stderr, "\n") != 1 {
			t.Errorf("%s with a 70 KB reason = exit %d, stderr %.200q; want exit 2 and one line", argv[0], res.code, res.stderr)
		}
	}
	if marks := r.marks(t); len(marks) != 0 {
		t.Fatalf("refused changes wrote %v", marks)
	}
}

// Two services behind one backend: the mark of the one is counted when the other goes.
func TestGuardCountsAnotherServiceOfTheBackend(t *testing.T) {
	r := newRunner(t)
	port := fakeLBs(t, map[string][]lb.Server{
		"web":        {{Port: 8080, Node: "lb1", Source: "10.0.0.1", Server: "be_web/app1", State: "UP", Weight: 1, TotalWeight: 2}},
		"web-canary": {{Port: 9090, Node: "lb1", Source: "10.0.0.1", Server: "be_web/canary1", State: "UP", Weight: 1, TotalWeight: 2}},
	})
	if res := r.run("hadown", "--guard", "-r", "x", "-p", port, "web-canary"); res.code != 0 {
		t.Fatalf("hadown web-canary: %+v", res)
	}
	refused(t, "hadown web after web-canary", r.run("hadown", "--guard", "-r", "x", "-p", port, "web"), "be_web")
}
