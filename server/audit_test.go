package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hacheck/hacheck/config"
	"github.com/hacheck/hacheck/spool"
)

// auditLines are the "spool change" lines logged so far, decoded.
func auditLines(t *testing.T, logs *lockedBuffer) []map[string]any {
	t.Helper()
	logs.mu.Lock()
	text := logs.buf.String()
	logs.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["message"] == "spool change" {
			out = append(out, m)
		}
	}
	return out
}

// TestAuditEverySpoolChange: a change through the HTTP API is logged once, as origin http with
// the client's address, and a file changed by another writer once, as origin watch with the
// file's owner; both are counted by action and origin.
func TestAuditEverySpoolChange(t *testing.T) {
	var logs lockedBuffer
	ts := startServer(t, func(c *config.Config) { c.AllowRemoteSpoolChanges = true }, func(s *Server) {
		cw, err := s.store.WatchChanges()
		if err != nil {
			t.Fatal(err)
		}
		s.changes = cw
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { s.followChanges(ctx, cw); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
	})
	ts.SetLogger(zerolog.New(&logs))

	resp, err := http.PostForm(ts.base+"/spool/web/8080/status", url.Values{"status": {"down"}, "reason": {"deploy"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST down: %s", resp.Status)
	}
	// Another writer: an old tool writing plain text, then removing it.
	tmp := filepath.Join(ts.store.Root(), ".api.tmp")
	if err := os.WriteFile(tmp, []byte("by hand"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(ts.store.Root(), "api")); err != nil {
		t.Fatal(err)
	}
	waitAudit := func(n int) []map[string]any {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			lines := auditLines(t, &logs)
			if len(lines) >= n || time.Now().After(deadline) {
				return lines
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitAudit(2) // the write is seen before the removal, so the two stay two changes
	if err := os.Remove(filepath.Join(ts.store.Root(), "api")); err != nil {
		t.Fatal(err)
	}
	lines := waitAudit(3)

	want := []map[string]any{
		{"action": "down", "service": "web", "port": 8080.0, "reason": "deploy", "origin": "http", "token": false, "expiration": nil},
		{"action": "down", "service": "api", "port": 0.0, "reason": "by hand", "origin": "watch", "uid": float64(os.Getuid())},
		{"action": "up", "service": "api", "port": 0.0, "origin": "watch"},
	}
	if len(lines) != len(want) {
		t.Fatalf("%d audit lines, want %d (the HTTP change must not come back through the watch):\n%v", len(lines), len(want), lines)
	}
	for i, w := range want {
		for k, v := range w {
			if got, ok := lines[i][k]; !ok || got != v {
				t.Errorf("audit line %d: %s = %v, want %v\n%v", i, k, got, v, lines[i])
			}
		}
	}
	if remote, _ := lines[0]["remote"].(string); !strings.HasPrefix(remote, "127.0.0.1:") {
		t.Errorf("the HTTP change's remote = %q, want the client's address", remote)
	}

	_, metrics, _ := ts.get(t, "/metrics")
	for _, series := range []string{
		`hacheck_spool_changes_total{action="down",origin="http"} 1`,
		`hacheck_spool_changes_total{action="down",origin="watch"} 1`,
		`hacheck_spool_changes_total{action="up",origin="watch"} 1`,
		`hacheck_spool_changes_total{action="up",origin="http"} 0`,
	} {
		if !strings.Contains(metrics, series) {
			t.Errorf("/metrics lacks %s", series)
		}
	}
}

func TestStatusFlagsOldMarks(t *testing.T) {
	ts := startServer(t, func(c *config.Config) { c.MaxMarkAge = config.Duration(time.Hour) })
	write := func(name, content string) {
		t.Helper()
		if err := writeMarkFile(ts.store.Root(), name, content); err != nil {
			t.Fatal(err)
		}
	}
	old := float64(time.Now().Add(-2 * time.Hour).Unix())
	write("forgotten", `{"reason": "kernel", "creation": `+strconv.FormatFloat(old, 'f', 0, 64)+`, "expiration": null}`)
	write("expires", `{"reason": "deploy", "creation": `+strconv.FormatFloat(old, 'f', 0, 64)+`, "expiration": 4102444800}`)
	write("fresh", `{"reason": "now", "creation": `+strconv.FormatInt(time.Now().Unix(), 10)+`}`)
	_, body, _ := ts.get(t, "/status")
	var status struct {
		OldMarks []struct {
			Mark       string  `json:"mark"`
			Reason     string  `json:"reason"`
			AgeSeconds float64 `json:"age_seconds"`
		} `json:"old_marks"`
	}
	if err := json.Unmarshal([]byte(body), &status); err != nil {
		t.Fatal(err)
	}
	if len(status.OldMarks) != 1 || status.OldMarks[0].Mark != "forgotten" || status.OldMarks[0].Reason != "kernel" || status.OldMarks[0].AgeSeconds < 7200 {
		t.Fatalf("old_marks = %+v, want only the 2h-old mark without an expiration", status.OldMarks)
	}
}

func TestStatusCountsMarksByKind(t *testing.T) {
	ts := startServer(t, nil)
	weight := 30
	for _, m := range []spool.Mark{
		{Service: "web", Reason: "deploy", Drain: true},
		{Service: "api", Weight: &weight},
		{Service: "db", Reason: "disk"},
		{Service: "db", Port: 5432, Reason: "disk"},
	} {
		if _, err := ts.store.Put(m); err != nil {
			t.Fatal(err)
		}
	}
	_, body, _ := ts.get(t, "/status")
	var status struct {
		Marks       int            `json:"marks"`
		MarksByKind map[string]int `json:"marks_by_kind"`
	}
	if err := json.Unmarshal([]byte(body), &status); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"down": 2, "drain": 1, "weight": 1}
	if status.Marks != 4 || len(status.MarksByKind) != 3 || status.MarksByKind["down"] != 2 || status.MarksByKind["drain"] != 1 || status.MarksByKind["weight"] != 1 {
		t.Fatalf("/status marks %d, marks_by_kind %v; want 4 and %v", status.Marks, status.MarksByKind, want)
	}
}
