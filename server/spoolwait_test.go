package server

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hacheck/hacheck/config"
)

// checkWithState makes a check request as HAProxy does with http-check send-state.
func checkWithState(t *testing.T, ts *testServer, service, state string) {
	t.Helper()
	ts.get(t, "/spool/"+service+"/0/", "X-Haproxy-Server-State", state)
}

func postSpool(t *testing.T, ts *testServer, path string, form url.Values) (int, string) {
	t.Helper()
	resp, err := http.PostForm(ts.base+path, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestSpoolPostGuard(t *testing.T) {
	ts := startServer(t, func(c *config.Config) { c.AllowRemoteSpoolChanges = true }, trustAtOnce)
	checkWithState(t, ts, "solo", "UP; address=127.0.0.1; port=8080; name=be_solo/solo1; node=lb1; weight=1/1; scur=0/0; qcur=0")
	checkWithState(t, ts, "web", "UP; address=127.0.0.1; port=8081; name=be_web/app1; node=lb1; weight=1/2; scur=0/0; qcur=0")
	down := url.Values{"status": {"down"}, "reason": {"r"}, "guard": {"1"}}

	code, body := postSpool(t, ts, "/spool/solo/8080/status", down)
	if code != http.StatusConflict || !strings.Contains(body, "be_solo") || !strings.Contains(body, "lb1") || strings.Count(strings.TrimSpace(body), "\n") != 0 {
		t.Fatalf("guard=1 on a backend's last server = %d %q, want 409 and one line naming be_solo and lb1", code, body)
	}
	if _, isDown := ts.store.Status("solo", 8080); isDown {
		t.Fatal("the refused change was written")
	}
	if code, body := postSpool(t, ts, "/spool/web/8081/status", down); code != http.StatusOK {
		t.Fatalf("guard=1 on one server of two = %d %q, want 200", code, body)
	}
	// Without guard=1 a client gets what it always got.
	if code, body := postSpool(t, ts, "/spool/solo/8080/status", url.Values{"status": {"down"}, "reason": {"r"}}); code != http.StatusOK {
		t.Fatalf("no guard = %d %q, want 200", code, body)
	}
	// Never for up.
	if code, body := postSpool(t, ts, "/spool/solo/8080/status", url.Values{"status": {"up"}, "guard": {"1"}}); code != http.StatusOK {
		t.Fatalf("up with guard=1 = %d %q, want 200", code, body)
	}
	for _, bad := range []url.Values{
		{"status": {"down"}, "guard": {"yes please"}},
		{"status": {"down"}, "wait": {"soon"}},
		{"status": {"down"}, "wait": {"0"}},
		{"status": {"down"}, "wait": {"301"}},
		{"status": {"down"}, "wait": {"NaN"}},
	} {
		if code, body := postSpool(t, ts, "/spool/other/0/status", bad); code != http.StatusBadRequest || strings.Count(strings.TrimSpace(body), "\n") != 0 {
			t.Errorf("%v = %d %q, want 400 and one line", bad, code, body)
		}
	}
	if _, isDown := ts.store.Status("other", 0); isDown {
		t.Fatal("a bad request wrote a mark")
	}
}

func TestSpoolPostWait(t *testing.T) {
	ts := startServer(t, func(c *config.Config) { c.AllowRemoteSpoolChanges = true }, trustAtOnce)
	decode := func(t *testing.T, body string) waitResult {
		t.Helper()
		var out struct{ Wait waitResult }
		if err := json.Unmarshal([]byte(body), &out); err != nil {
			t.Fatalf("%v: %q", err, body)
		}
		return out.Wait
	}

	t.Run("nobody checks", func(t *testing.T) {
		code, body := postSpool(t, ts, "/spool/quiet/0/status", url.Values{"status": {"down"}, "wait": {"5"}})
		if w := decode(t, body); code != http.StatusOK || !w.Nobody || !w.Done {
			t.Fatalf("= %d %q, want 200 at once with nobody", code, body)
		}
	})

	t.Run("time runs out", func(t *testing.T) {
		checkWithState(t, ts, "web", "UP; port=8080; name=be_web/app1; node=lb1; weight=1/2")
		code, body := postSpool(t, ts, "/spool/web/8080/status", url.Values{"status": {"down"}, "wait": {"0.3"}})
		w := decode(t, body)
		if code != http.StatusGatewayTimeout || w.Done || len(w.Pending) != 1 || !strings.HasPrefix(w.Pending[0], "lb1 be_web/app1") {
			t.Fatalf("= %d %q, want 504 naming lb1's be_web/app1", code, body)
		}
		if _, isDown := ts.store.Status("web", 8080); !isDown {
			t.Fatal("wait= only waits: the mark must be written")
		}
	})

	t.Run("the load balancer reports the change", func(t *testing.T) {
		checkWithState(t, ts, "api", "DOWN; port=9090; name=be_api/a1; node=lb1; weight=0/1")
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // HAProxy keeps checking, now holding the server UP
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
					checkWithState(t, ts, "api", "UP; port=9090; name=be_api/a1; node=lb1; weight=1/1")
				}
			}
		}()
		code, body := postSpool(t, ts, "/spool/api/9090/status", url.Values{"status": {"up"}, "wait": {"10"}})
		close(stop)
		wg.Wait()
		if w := decode(t, body); code != http.StatusOK || !w.Done || w.Lines != 1 {
			t.Fatalf("= %d %q, want 200 with the one line done", code, body)
		}
	})
}

func TestSpoolPostDrain(t *testing.T) {
	ts := startServer(t, func(c *config.Config) { c.AllowRemoteSpoolChanges = true }, trustAtOnce)
	checkWithState(t, ts, "web", "UP; port=8080; name=be_web/app1; node=lb1; weight=1/2")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // HAProxy keeps checking; after the 404 it holds the server NOLB
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				checkWithState(t, ts, "web", "NOLB; port=8080; name=be_web/app1; node=lb1; weight=0/1")
			}
		}
	}()
	code, body := postSpool(t, ts, "/spool/web/8080/status", url.Values{"status": {"drain"}, "reason": {"deploy"}, "wait": {"10"}})
	close(stop)
	wg.Wait()
	if code != http.StatusOK || !strings.Contains(body, `"status":"drain"`) || !strings.Contains(body, `"done":true`) {
		t.Fatalf("POST status=drain wait=10 = %d %q, want 200, done once the line says NOLB", code, body)
	}
	if m, ok := ts.store.Read("web", 8080); !ok || !m.Drain {
		t.Fatalf("mark = %+v, %v; want a drain mark", m, ok)
	}
	if code, _, _ := ts.get(t, "/spool/web/8080/"); code != http.StatusNotFound {
		t.Fatalf("spool check of a drained instance = %d, want 404", code)
	}
	if code, body := postSpool(t, ts, "/spool/web/8080/status", url.Values{"status": {"sideways"}}); code != http.StatusBadRequest || !strings.Contains(body, "up, down or drain") {
		t.Fatalf("status=sideways = %d %q", code, body)
	}
}
