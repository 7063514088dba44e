package metrics

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hacheck/hacheck/spool"
)

var spoolFamilies = []string{
	"hacheck_spool_mark_creation_timestamp_seconds",
	"hacheck_spool_mark_expiration_timestamp_seconds",
	"hacheck_spool_mark_info",
	"hacheck_spool_marks_unreadable",
	"hacheck_spool_read_errors_total",
}

const spoolHelp = `
# HELP hacheck_spool_mark_creation_timestamp_seconds Unix time each current spool mark was created (down since). port 0 is the whole service; service "all" is the host-wide mark.
# TYPE hacheck_spool_mark_creation_timestamp_seconds gauge
# HELP hacheck_spool_mark_expiration_timestamp_seconds Unix time each current spool mark expires; absent for marks without an expiration.
# TYPE hacheck_spool_mark_expiration_timestamp_seconds gauge
# HELP hacheck_spool_mark_info Always 1, one series per current spool mark; reason is the mark's reason, cut to 100 bytes; kind is down, drain or weight (a weight-only mark, which holds nothing down).
# TYPE hacheck_spool_mark_info gauge
# HELP hacheck_spool_marks_unreadable Spool marks that exist but cannot be read or parsed; each counts as down.
# TYPE hacheck_spool_marks_unreadable gauge
# HELP hacheck_spool_read_errors_total Scrapes at which the spool directory could not be listed, so no mark series were exported.
# TYPE hacheck_spool_read_errors_total counter
`

func TestSpoolMarks(t *testing.T) {
	m, store := newTestMetrics(t, Options{})
	compare(t, m, spoolHelp+`
hacheck_spool_marks_unreadable 0
hacheck_spool_read_errors_total 0
`, spoolFamilies...)

	longReason := "x" + strings.Repeat("é", 60) // byte 100 is inside an "é"
	for _, mark := range []struct {
		service    string
		port       int
		reason     string
		expiration time.Time
	}{
		{"web", 0, "maintenance by alice", time.Time{}},
		{"web", 8080, longReason, testNow.Add(time.Hour)},
		{spool.AllServices, 0, "", time.Time{}},
	} {
		if _, err := store.Down(mark.service, mark.port, mark.reason, mark.expiration); err != nil {
			t.Fatal(err)
		}
	}
	// Visible at the very next scrape: nothing is cached.
	compare(t, m, spoolHelp+`
hacheck_spool_mark_creation_timestamp_seconds{port="0",service="all"} 1735787045
hacheck_spool_mark_creation_timestamp_seconds{port="0",service="web"} 1735787045
hacheck_spool_mark_creation_timestamp_seconds{port="8080",service="web"} 1735787045
hacheck_spool_mark_expiration_timestamp_seconds{port="8080",service="web"} 1735790645
hacheck_spool_mark_info{kind="down",port="0",reason="",service="all"} 1
hacheck_spool_mark_info{kind="down",port="0",reason="maintenance by alice",service="web"} 1
hacheck_spool_mark_info{kind="down",port="8080",reason="x`+strings.Repeat("é", 49)+`",service="web"} 1
hacheck_spool_marks_unreadable 0
hacheck_spool_read_errors_total 0
`, spoolFamilies...)

	for _, mark := range []struct {
		service string
		port    int
	}{{"web", 0}, {spool.AllServices, 0}} {
		if _, err := store.Up(mark.service, mark.port); err != nil {
			t.Fatal(err)
		}
	}
	compare(t, m, spoolHelp+`
hacheck_spool_mark_creation_timestamp_seconds{port="8080",service="web"} 1735787045
hacheck_spool_mark_expiration_timestamp_seconds{port="8080",service="web"} 1735790645
hacheck_spool_mark_info{kind="down",port="8080",reason="x`+strings.Repeat("é", 49)+`",service="web"} 1
hacheck_spool_marks_unreadable 0
hacheck_spool_read_errors_total 0
`, spoolFamilies...)

	// Two hours later the web:8080 mark has expired: it no longer counts, so it is not exported.
	later := New(spool.New(store.Root(), spool.WithClock(func() time.Time { return testNow.Add(2 * time.Hour) })), "1.2.3", Options{})
	compare(t, later, spoolHelp+`
hacheck_spool_marks_unreadable 0
hacheck_spool_read_errors_total 0
`, spoolFamilies...)
}

func TestSpoolUnreadableMark(t *testing.T) {
	m, store := newTestMetrics(t, Options{})
	path := filepath.Join(store.Root(), "broken")
	if err := os.WriteFile(path, []byte(`{"reason": "x", "expiration": "soon"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, testNow, testNow.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	compare(t, m, spoolHelp+`
hacheck_spool_mark_creation_timestamp_seconds{port="0",service="broken"} 1735783445
hacheck_spool_marks_unreadable 1
hacheck_spool_read_errors_total 0
`, "hacheck_spool_mark_creation_timestamp_seconds", "hacheck_spool_marks_unreadable", "hacheck_spool_read_errors_total")

	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var reason string
	for _, mf := range families {
		if mf.GetName() == "hacheck_spool_mark_info" {
			for _, l := range mf.GetMetric()[0].GetLabel() {
				if l.GetName() == "reason" {
					reason = l.GetValue()
				}
			}
		}
	}
	if !strings.HasPrefix(reason, "unreadable mark, counted as down") || len(reason) > maxReasonLen {
		t.Errorf("reason label %q: want the unreadable explanation, at most %d bytes", reason, maxReasonLen)
	}
}

func TestSpoolListError(t *testing.T) {
	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	m := New(spool.New(notADir), "1.2.3", Options{})
	for _, want := range []string{"1", "2"} { // once per scrape
		compare(t, m, spoolHelp+`
hacheck_spool_read_errors_total `+want+`
`, spoolFamilies...)
	}
	// The rest of /metrics is unaffected.
	if _, err := m.Registry().Gather(); err != nil {
		t.Errorf("Gather: %v", err)
	}
}

func TestTruncateReason(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"short", "short"},
		{strings.Repeat("a", 100), strings.Repeat("a", 100)},
		{strings.Repeat("a", 101), strings.Repeat("a", 100)},
		{strings.Repeat("a", 99) + "é", strings.Repeat("a", 99)},
		{strings.Repeat("a", 98) + "é", strings.Repeat("a", 98) + "é"},
		{strings.Repeat("a", 98) + "😀", strings.Repeat("a", 98)},
		{"bad \xff byte", "bad \uFFFD byte"},
	} {
		if got := truncateReason(tc.in); got != tc.want {
			t.Errorf("truncateReason(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// A mark expiring after 2262 (where int64 nanoseconds overflow) still exports its real time.
func TestSpoolMarkFarFutureExpiration(t *testing.T) {
	m, store := newTestMetrics(t, Options{})
	path := filepath.Join(store.Root(), "far")
	if err := os.WriteFile(path, []byte(`{"reason":"x","expiration":20000000000,"creation":1750000000}`), 0o644); err != nil {
		t.Fatal(err)
	}
	compare(t, m, spoolHelp+`
hacheck_spool_mark_creation_timestamp_seconds{port="0",service="far"} 1.75e+09
hacheck_spool_mark_expiration_timestamp_seconds{port="0",service="far"} 2e+10
hacheck_spool_marks_unreadable 0
hacheck_spool_read_errors_total 0
`, "hacheck_spool_mark_creation_timestamp_seconds", "hacheck_spool_mark_expiration_timestamp_seconds", "hacheck_spool_marks_unreadable", "hacheck_spool_read_errors_total")
}

func TestSpoolMarkKinds(t *testing.T) {
	m, store := newTestMetrics(t, Options{})
	weight := 30
	for _, mark := range []spool.Mark{
		{Service: "web", Reason: "deploy", Drain: true},
		{Service: "api", Reason: "canary", Weight: &weight},
		{Service: "db", Reason: "disk"},
	} {
		if _, err := store.Put(mark); err != nil {
			t.Fatal(err)
		}
	}
	compare(t, m, `
# HELP hacheck_spool_mark_info Always 1, one series per current spool mark; reason is the mark's reason, cut to 100 bytes; kind is down, drain or weight (a weight-only mark, which holds nothing down).
# TYPE hacheck_spool_mark_info gauge
hacheck_spool_mark_info{kind="down",port="0",reason="disk",service="db"} 1
hacheck_spool_mark_info{kind="drain",port="0",reason="deploy",service="web"} 1
hacheck_spool_mark_info{kind="weight",port="0",reason="canary",service="api"} 1
`, "hacheck_spool_mark_info")
}
