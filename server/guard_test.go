package server

import (
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hacheck/hacheck/config"
	"github.com/hacheck/hacheck/lb"
)

// Two operators at the same moment, each taking one of the two servers of be_web out through
// POST guard=1: the load balancer has reported neither change yet, so only the spool can tell
// the second one that the first went ahead. Exactly one may pass, every time.
func TestSpoolPostGuardSecondOperator(t *testing.T) {
	ts := startServer(t, func(c *config.Config) { c.AllowRemoteSpoolChanges = true }, trustAtOnce)
	for _, port := range []int{8080, 8081} {
		checkWithState(t, ts, "web", "UP; address=127.0.0.1; port="+strconv.Itoa(port)+"; name=be_web/app"+strconv.Itoa(port)+"; node=lb1; weight=1/2; scur=0/0; qcur=0")
	}
	down := url.Values{"status": {"down"}, "reason": {"r"}, "guard": {"1"}}
	for round := range 20 {
		start := make(chan struct{})
		codes := make([]int, 2)
		bodies := make([]string, 2)
		var wg sync.WaitGroup
		for i, port := range []string{"8080", "8081"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				codes[i], bodies[i] = postSpool(t, ts, "/spool/web/"+port+"/status", down)
			}()
		}
		close(start)
		wg.Wait()
		ok, refused := 0, 0
		for i, code := range codes {
			switch code {
			case http.StatusOK:
				ok++
			case http.StatusConflict:
				refused++
				if !strings.Contains(bodies[i], "already on this host") {
					t.Errorf("round %d: the refusal does not say a mark of this host was counted: %q", round, bodies[i])
				}
			}
		}
		if ok != 1 || refused != 1 {
			t.Fatalf("round %d: two concurrent guard=1 downs of be_web's two servers = %v %q, want one 200 and one 409", round, codes, bodies)
		}
		_, down80 := ts.store.Status("web", 8080)
		_, down81 := ts.store.Status("web", 8081)
		if down80 == down81 {
			t.Fatalf("round %d: marks web:8080 %v, web:8081 %v; want exactly one", round, down80, down81)
		}
		for _, port := range []string{"8080", "8081"} {
			if code, body := postSpool(t, ts, "/spool/web/"+port+"/status", url.Values{"status": {"up"}}); code != http.StatusOK {
				t.Fatalf("up: %d %q", code, body)
			}
		}
	}
}

// The host-wide mark and a drain are guarded like any down.
func TestSpoolPostGuardAllAndDrain(t *testing.T) {
	ts := startServer(t, func(c *config.Config) { c.AllowRemoteSpoolChanges = true }, trustAtOnce)
	checkWithState(t, ts, "web", "UP; address=127.0.0.1; port=8080; name=be_web/app1; node=lb1; weight=1/2; scur=0/0; qcur=0")
	checkWithState(t, ts, "solo", "UP; address=127.0.0.1; port=8080; name=be_solo/solo1; node=lb1; weight=1/1; scur=0/0; qcur=0")
	code, body := postSpool(t, ts, "/spool/all/0/status", url.Values{"status": {"down"}, "reason": {"r"}, "guard": {"1"}})
	if code != http.StatusConflict || !strings.Contains(body, "be_solo") || strings.Contains(body, "be_web") {
		t.Fatalf("guard=1 down all = %d %q, want 409 naming be_solo only", code, body)
	}
	code, body = postSpool(t, ts, "/spool/solo/0/status", url.Values{"status": {"drain"}, "reason": {"r"}, "guard": {"1"}})
	if code != http.StatusConflict || !strings.Contains(body, "be_solo") {
		t.Fatalf("guard=1 drain solo = %d %q, want 409 naming be_solo", code, body)
	}
	if marks, err := ts.store.List(); err != nil || len(marks) != 0 {
		t.Fatalf("refused changes wrote %v (%v)", marks, err)
	}
}

// A writer refuses, with a 400 and nothing written, what would make the mark unreadable or its
// age untrustworthy.
func TestSpoolPostRefusesWhatReadersCannotTrust(t *testing.T) {
	ts := startServer(t, func(c *config.Config) { c.AllowRemoteSpoolChanges = true }, trustAtOnce)
	future := strconv.FormatInt(time.Now().Add(48*time.Hour).Unix(), 10)
	for name, form := range map[string]url.Values{
		"a reason over the form limit": {"status": {"down"}, "reason": {strings.Repeat("x", 70<<10)}},
		"a future creation":            {"status": {"down"}, "reason": {"r"}, "creation": {future}},
	} {
		code, body := postSpool(t, ts, "/spool/web/0/status", form)
		if code != http.StatusBadRequest || strings.Count(strings.TrimSpace(body), "\n") != 0 {
			t.Errorf("%s: %d %q, want 400 and one line", name, code, body)
		}
	}
	if marks, err := ts.store.List(); err != nil || len(marks) != 0 {
		t.Fatalf("refused changes wrote %v (%v)", marks, err)
	}
}

// The Python hacheck read POST's fields from the query string too (`curl -X POST
// 'host:6666/spool/web/0/status?status=down&reason=deploy'`). A script written that way must
// work, and a guard=1 (or wait=) put there must not be dropped silently: the change would go
// ahead unguarded.
func TestSpoolPostFieldsInTheQuery(t *testing.T) {
	ts := startServer(t, func(c *config.Config) { c.AllowRemoteSpoolChanges = true }, trustAtOnce)
	checkWithState(t, ts, "solo", "UP; address=127.0.0.1; port=8080; name=be_solo/solo1; node=lb1; weight=1/1; scur=0/0; qcur=0")
	post := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Post(ts.base+path, "application/x-www-form-urlencoded", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := post("/spool/solo/0/status?status=down&reason=deploy&guard=1"); code != http.StatusConflict {
		t.Fatalf("guard=1 in the query = %d %q; want 409", code, body)
	}
	if _, down := ts.store.Status("solo", 0); down {
		t.Fatal("a refused change was written")
	}
	if code, body := post("/spool/web/0/status?status=down&reason=deploy"); code != http.StatusOK {
		t.Fatalf("status=down in the query = %d %q; want 200", code, body)
	}
	if m, down := ts.store.Status("web", 0); !down || m.Reason != "deploy" {
		t.Fatalf("web after the query's down: %+v, %v", m, down)
	}
	// A field in both: the body's wins, as Go's and Tornado's forms have it.
	code, _ := postSpool(t, ts, "/spool/web/0/status?status=down", url.Values{"status": {"up"}})
	if _, down := ts.store.Status("web", 0); code != http.StatusOK || down {
		t.Fatalf("status=up in the body, down in the query = %d, down %v; want the body's up", code, down)
	}
}

// Just after hacheck starts no load balancer counts yet: POST guard=1 of the last server must
// wait for the one that just began checking to count, and then refuse, not find "nobody" and
// let the last server go.
func TestSpoolPostGuardJustAfterStart(t *testing.T) {
	ts := startServer(t, func(c *config.Config) { c.AllowRemoteSpoolChanges = true }, func(s *Server) {
		s.lbTrust = lb.Options{MinReports: 3, MinSpan: 200 * time.Millisecond}
		s.lb.SetOptions(s.lbOptions(*s.cfg.Load()))
	})
	const state = "UP; address=127.0.0.1; port=8080; name=be_lone/app1; node=lb1; weight=1/1; scur=0/0; qcur=0"
	checkWithState(t, ts, "lone", state)
	type answer struct {
		code int
		body string
	}
	done := make(chan answer, 1)
	go func() {
		code, body := postSpool(t, ts, "/spool/lone/8080/status", url.Values{"status": {"down"}, "reason": {"r"}, "guard": {"1"}})
		done <- answer{code, body}
	}()
	// The load balancer goes on checking at its own interval, as HAProxy does.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case a := <-done:
			if a.code != http.StatusConflict || !strings.Contains(a.body, "no usable server left") {
				t.Fatalf("POST guard=1 of the last server just after start = %d %q, want 409 once the load balancer counts", a.code, a.body)
			}
			if _, down := ts.store.Status("lone", 8080); down {
				t.Fatal("the refused change was written")
			}
			return
		case <-tick.C:
			checkWithState(t, ts, "lone", state)
		case <-deadline:
			t.Fatal("POST guard=1 did not answer within 20 s")
		}
	}
}
