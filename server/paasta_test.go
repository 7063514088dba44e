package server

import (
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hacheck/hacheck/config"
)

// paastaDownBody is the expression PaaSTA's drain method (paasta_tools/hacheck.py) applies to
// the body of a 503 from GET /spool/<registration>/<port>/status.
var paastaDownBody = regexp.MustCompile(`^Service (?P<service>.+) in (?P<state>.+) state(?: since (?P<since>[0-9.]+))?(?: until (?P<until>[0-9.]+))?(?:: (?P<reason>.*))?$`)

// paastaSpool is what PaaSTA's get_spool makes of an answer: state "up" for a 200, else the
// body's fields, with a missing since or until read as 0.
type paastaSpool struct {
	service, state, reason string
	since, until           float64
}

func paastaGet(t *testing.T, ts *testServer, path string) paastaSpool {
	t.Helper()
	resp, err := http.Get(ts.base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		return paastaSpool{state: "up"}
	}
	match := paastaDownBody.FindStringSubmatch(string(body))
	if match == nil {
		t.Fatalf("GET %s: %d %q does not match PaaSTA's expression", path, resp.StatusCode, body)
	}
	field := func(name string) string { return match[paastaDownBody.SubexpIndex(name)] }
	number := func(name string) float64 {
		if field(name) == "" {
			return 0
		}
		f, err := strconv.ParseFloat(field(name), 64)
		if err != nil {
			t.Fatalf("%s %q: %v", name, field(name), err)
		}
		return f
	}
	return paastaSpool{service: field("service"), state: field("state"), reason: field("reason"), since: number("since"), until: number("until")}
}

func paastaPost(t *testing.T, ts *testServer, path string, form url.Values) {
	t.Helper()
	resp, err := http.PostForm(ts.base+path, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if body, _ := io.ReadAll(resp.Body); resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s %v: %d %s", path, form, resp.StatusCode, body)
	}
}

// pythonTime is how Python's str() writes time.time() + a float, which PaaSTA posts.
func pythonTime(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixNano())/1e9, 'f', -1, 64)
}

// A drain driven as PaaSTA's HacheckDrainMethod drives it: down with a float expiration, then
// is_safe_to_kill (since older than its delay) must say no right after the drain and after a
// repeated drain, and yes for a mark whose creation is long past; up makes the GET answer 200.
func TestPaastaDrainCycle(t *testing.T) {
	ts := startServer(t, func(c *config.Config) { c.AllowRemoteSpoolChanges = true })
	const delay = 120.0 // PaaSTA's default is_safe_to_kill delay, in seconds
	path := "/spool/web.main/31000/status"
	safeToKill := func(s paastaSpool) bool {
		return s.state != "up" && s.since < float64(time.Now().UnixNano())/1e9-delay
	}

	drainedAt := time.Now()
	expiration := drainedAt.Add(2400 * time.Second)
	drain := url.Values{"status": {"down"}, "expiration": {pythonTime(expiration)}, "reason": {"Drained by Paasta"}}
	paastaPost(t, ts, path, drain)
	got := paastaGet(t, ts, path)
	if got.service != "web.main" || got.state != "down" || got.reason != "Drained by Paasta" {
		t.Fatalf("after the drain: %+v", got)
	}
	if math.Abs(got.until-float64(expiration.UnixNano())/1e9) > 1e-6 {
		t.Errorf("until %f, want the posted expiration %s", got.until, pythonTime(expiration))
	}
	if math.Abs(got.since-float64(drainedAt.UnixNano())/1e9) > 60 || safeToKill(got) {
		t.Fatalf("since %f right after the drain at %s: the task would be killed at once", got.since, pythonTime(drainedAt))
	}

	// PaaSTA drains again while it waits: "since" stays.
	drain.Set("expiration", pythonTime(time.Now().Add(2400*time.Second)))
	paastaPost(t, ts, path, drain)
	if again := paastaGet(t, ts, path); again.since != got.since || safeToKill(again) {
		t.Fatalf("after a repeated drain: since %f, was %f", again.since, got.since)
	}

	// A mark created long ago (a float creation, as a replicating tool posts it) is safe.
	paastaPost(t, ts, "/spool/web.canary/31001/status", url.Values{"status": {"down"}, "creation": {"1700000000.25"},
		"expiration": {pythonTime(expiration)}, "reason": {"Drained by Paasta"}})
	if old := paastaGet(t, ts, "/spool/web.canary/31001/status"); old.since != 1700000000.25 || !safeToKill(old) {
		t.Fatalf("old drain: %+v, want since 1700000000.25 and safe to kill", old)
	}

	paastaPost(t, ts, path, url.Values{"status": {"up"}})
	if up := paastaGet(t, ts, path); up.state != "up" {
		t.Fatalf("after up: %+v", up)
	}
}

// Times in the form must be finite unix seconds; a fraction is fine, nothing else is.
func TestSpoolFormTimes(t *testing.T) {
	ts := startServer(t, func(c *config.Config) { c.AllowRemoteSpoolChanges = true })
	future := time.Now().Add(time.Hour)
	tests := []struct {
		expiration, creation string
		code                 int
	}{
		{pythonTime(future), "", 200},
		{strconv.FormatInt(future.Unix(), 10), "1700000000.5", 200},
		{"", "1700000000", 200},
		{"null", "", 200},
		{"1e10", "", 200},  // 2286: far, but a time
		{"5e11", "", 200},  // still within what a mark holds
		{"nan", "", 400},   // not a number
		{"inf", "", 400},   // not finite
		{"1e999", "", 400}, // overflows
		{"-5", "", 400},    // before 1970
		{"", "0", 400},     // no creation at the epoch
		{"tomorrow", "", 400},
		{"1", "", 400}, // in the past
	}
	for _, tt := range tests {
		form := url.Values{"status": {"down"}, "reason": {"r"}}
		if tt.expiration != "" {
			form.Set("expiration", tt.expiration)
		}
		if tt.creation != "" {
			form.Set("creation", tt.creation)
		}
		resp, err := http.PostForm(ts.base+"/spool/web/0/status", form)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.code || strings.Contains(strings.TrimSpace(string(body)), "\n") {
			t.Errorf("expiration %q creation %q: %d %q, want %d on one line", tt.expiration, tt.creation, resp.StatusCode, body, tt.code)
		}
		if tt.code == 200 && tt.expiration != "" && tt.expiration != "null" {
			m, _ := ts.store.Status("web", 0)
			want, _ := strconv.ParseFloat(tt.expiration, 64)
			if got := float64(m.Expiration.Unix()) + float64(m.Expiration.Nanosecond())/1e9; math.Abs(got-want) > 1e-6*math.Max(1, want/1e10) {
				t.Errorf("expiration %q stored as %v", tt.expiration, m.Expiration)
			}
		}
	}
}

// An entry that is not a regular file under a mark's name: the check answers 503 naming it,
// /status lists it among the unreadable marks and the metric counts it.
func TestOddSpoolEntryIsReported(t *testing.T) {
	tests := []struct {
		kind, reason string
		make         func(t *testing.T, path string) error
	}{
		{"symlink", "symlink in the spool, not followed", func(_ *testing.T, p string) error { return os.Symlink("/etc/passwd", p) }},
		{"FIFO", "FIFO in the spool, not read", func(_ *testing.T, p string) error { return syscall.Mkfifo(p, 0o644) }},
		{"directory", "directory in the spool, not read", func(_ *testing.T, p string) error { return os.Mkdir(p, 0o755) }},
		{"socket", "socket in the spool, not read", func(t *testing.T, p string) error {
			l, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
			if err == nil {
				t.Cleanup(func() { l.Close() })
			}
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			ts := startServer(t, nil)
			if err := tt.make(t, filepath.Join(ts.store.Root(), "web")); err != nil {
				t.Fatal(err)
			}
			for _, path := range []string{"/spool/web/8080/status", "/http/web/1/", "/tcp/web/1/"} {
				code, body, _ := ts.get(t, path)
				if code != 503 || !strings.HasPrefix(body, "Service web in down state since ") || !strings.HasSuffix(body, ": "+tt.reason) {
					t.Errorf("GET %s: %d %q", path, code, body)
				}
			}
			_, status, _ := ts.get(t, "/status")
			if !strings.Contains(status, `"unreadable_marks":[{"mark":"web","error":"`+tt.reason+`"}]`) {
				t.Errorf("/status: %s", status)
			}
			_, metrics, _ := ts.get(t, "/metrics")
			if !strings.Contains(metrics, "\nhacheck_spool_marks_unreadable 1\n") {
				t.Errorf("/metrics does not count it:\n%s", grepLines(metrics, "hacheck_spool_"))
			}
		})
	}
}

func grepLines(text, substr string) string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
