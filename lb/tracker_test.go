package lb

import (
	"fmt"
	"net/netip"
	"reflect"
	"sync"
	"testing"
	"time"
)

var (
	t0   = time.Unix(1_800_000_000, 0)
	lbA  = netip.MustParseAddr("10.0.0.1")
	lbB  = netip.MustParseAddr("10.0.0.2")
	lbA6 = netip.MustParseAddr("::ffff:10.0.0.1") // lbA as an IPv6 socket sees it
)

func header(state, name, node string) string {
	return state + "; address=10.9.9.9; port=8080; name=" + name + "; node=" + node + "; weight=1/2; scur=3/5; qcur=0"
}

func TestTrackerSnapshot(t *testing.T) {
	tr := NewTracker(Options{Window: 30 * time.Second})
	tr.Record("web", 8080, header("UP", "be/w1", "lb2"), lbB, t0)
	tr.Record("web", 8080, header("UP 2/3", "be/w1", "lb1"), lbA, t0.Add(time.Second))
	tr.Record("web", 8080, header("DOWN", "be/w1", "lb1"), lbA6, t0.Add(2*time.Second)) // same line, newer
	tr.Record("web", 8080, header("UP", "alt/w1", "lb1"), lbA, t0.Add(-40*time.Second)) // out of the window
	tr.Record("web", 9090, header("NOLB", "be/w1", "lb1"), lbA, t0)
	tr.Record("web", 8080, "garbage", lbA, t0)
	tr.Record("api", 8080, header("UP", "be/a1", "lb1"), lbA, t0)
	tr.RecordAgent("web", 0, lbB, "maint # deploy", t0)
	tr.RecordAgent("web", 8080, lbA, "ready 100%", t0.Add(time.Second))
	tr.RecordAgent("web", 8080, lbA6, "drain", t0.Add(2*time.Second))

	now := t0.Add(3 * time.Second)
	got := tr.Snapshot("web", 0, now)
	line := func(port int, node, server, source, state, counters string, seen time.Time) Server {
		return Server{Port: port, Node: node, Server: server, Source: source, State: state, Counters: counters,
			Weight: 1, TotalWeight: 2, Scur: 3, BackendScur: 5,
			LastSeen: unixSeconds(seen), AgeSeconds: now.Sub(seen).Seconds()}
	}
	want := Snapshot{Service: "web", WindowSeconds: 30, Now: unixSeconds(now),
		Servers: []Server{
			line(8080, "lb1", "be/w1", "10.0.0.1", "DOWN", "", t0.Add(2*time.Second)),
			line(9090, "lb1", "be/w1", "10.0.0.1", "NOLB", "", t0),
			line(8080, "lb2", "be/w1", "10.0.0.2", "UP", "", t0),
		},
		Agents: []Agent{
			{Port: 0, Source: "10.0.0.2", Reply: "maint # deploy", LastSeen: unixSeconds(t0), AgeSeconds: 3},
			{Port: 8080, Source: "10.0.0.1", Reply: "drain", LastSeen: unixSeconds(t0.Add(2 * time.Second)), AgeSeconds: 1},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Snapshot(web)\n got %+v\nwant %+v", got, want)
	}

	if got := tr.Snapshot("web", 9090, now); len(got.Servers) != 1 || got.Servers[0].Port != 9090 || len(got.Agents) != 0 {
		t.Errorf("Snapshot(web, 9090) = %+v, want only the 9090 line", got)
	}
	if got := tr.Snapshot("nobody", 0, now); got.Servers == nil || got.Agents == nil || len(got.Servers)+len(got.Agents) != 0 {
		t.Errorf("Snapshot(nobody) = %+v, want empty, non-nil lists", got)
	}
	if got := tr.Snapshot("web", 0, t0.Add(time.Minute)); len(got.Servers)+len(got.Agents) != 0 {
		t.Errorf("a minute later Snapshot(web) = %+v, want nothing left in the window", got)
	}
}

func TestTrackerStateCounts(t *testing.T) {
	tr := NewTracker(Options{})
	tr.Record("web", 8080, header("UP", "be/w1", "lb1"), lbA, t0)
	tr.Record("web", 8080, header("UP 1/2", "be/w1", "lb2"), lbB, t0)
	tr.Record("web", 9090, header("NOLB", "be/w2", "lb1"), lbA, t0)
	tr.Record("web", 9090, header("MAINT", "be/w3", "lb1"), lbA, t0)
	tr.Record("api", 1, header("DOWN 1/2", "api/a", "lb1"), lbA, t0)
	tr.Record("old", 1, header("DOWN", "old/a", "lb1"), lbA, t0.Add(-time.Hour))
	want := map[string]map[string]int{
		"web": {"UP": 2, "NOLB": 1, "other": 1},
		"api": {"DOWN": 1},
	}
	if got := tr.StateCounts(t0); !reflect.DeepEqual(got, want) {
		t.Errorf("StateCounts = %v, want %v", got, want)
	}
}

func TestTrackerBounds(t *testing.T) {
	t.Run("keys", func(t *testing.T) {
		tr := NewTracker(Options{Window: 10 * time.Second, MaxKeys: 2, MaxLines: 10})
		tr.Record("a", 1, header("UP", "b/s", "n"), lbA, t0)
		tr.Record("b", 1, header("UP", "b/s", "n"), lbA, t0)
		tr.Record("c", 1, header("UP", "b/s", "n"), lbA, t0.Add(time.Second))
		tr.RecordAgent("c", 0, lbA, "ready 100%", t0.Add(time.Second))
		if got := tr.Dropped(); got != 2 {
			t.Errorf("Dropped() = %d, want 2 (a third key, twice)", got)
		}
		if got := tr.Snapshot("c", 0, t0.Add(time.Second)); len(got.Servers)+len(got.Agents) != 0 {
			t.Errorf("a key beyond MaxKeys was kept: %+v", got)
		}
		tr.Record("a", 1, header("DOWN", "b/s", "n"), lbA, t0.Add(time.Second))
		if got := tr.Snapshot("a", 0, t0.Add(time.Second)); len(got.Servers) != 1 || got.Servers[0].State != "DOWN" {
			t.Errorf("a kept key was not updated at the limit: %+v", got)
		}
		// Once b has aged out of the window, its room goes to a newcomer.
		later := t0.Add(11500 * time.Millisecond)
		tr.Record("c", 1, header("UP", "b/s", "n"), lbA, later)
		if got := tr.Snapshot("c", 0, later); len(got.Servers) != 1 {
			t.Errorf("after b aged out, c was not kept: %+v (dropped %d)", got, tr.Dropped())
		}
	})
	t.Run("lines per key", func(t *testing.T) {
		tr := NewTracker(Options{Window: 10 * time.Second, MaxKeys: 5, MaxLines: 3})
		for i := range 5 {
			tr.Record("a", 1, header("UP", fmt.Sprintf("b/s%d", i), "n"), lbA, t0)
		}
		tr.RecordAgent("a", 1, lbA, "ready 100%", t0)
		got := tr.Snapshot("a", 0, t0)
		if len(got.Servers)+len(got.Agents) != 3 || tr.Dropped() != 3 {
			t.Errorf("kept %d servers and %d agents, dropped %d; want 3 kept and 3 dropped", len(got.Servers), len(got.Agents), tr.Dropped())
		}
		tr.Record("a", 1, header("UP", "b/s9", "n"), lbA, t0.Add(11*time.Second))
		if got := tr.Snapshot("a", 0, t0.Add(11*time.Second)); len(got.Servers) != 1 || got.Servers[0].Server != "b/s9" {
			t.Errorf("after the old lines aged out, the new one was not kept: %+v", got)
		}
	})
	t.Run("total", func(t *testing.T) {
		tr := NewTracker(Options{Window: 10 * time.Second, MaxKeys: 1, MaxLines: 100})
		for i := range linesPerKey + 4 {
			tr.Record("a", 1, header("UP", fmt.Sprintf("b/s%d", i), "n"), lbA, t0)
		}
		if got := tr.Snapshot("a", 0, t0); len(got.Servers) != linesPerKey || tr.Dropped() != 4 {
			t.Errorf("kept %d lines, dropped %d; want %d and 4", len(got.Servers), tr.Dropped(), linesPerKey)
		}
	})
}

func TestTrackerReloadWindow(t *testing.T) {
	tr := NewTracker(Options{})
	if tr.Window() != DefaultWindow {
		t.Fatalf("default window %v, want %v", tr.Window(), DefaultWindow)
	}
	tr.Record("a", 1, header("UP", "b/s", "n"), lbA, t0)
	tr.SetOptions(Options{Window: 5 * time.Second})
	if got := tr.Snapshot("a", 0, t0.Add(6*time.Second)); len(got.Servers) != 0 || got.WindowSeconds != 5 {
		t.Errorf("after a reload to a 5s window, a line 6s old is still reported: %+v", got)
	}
}

// TestTrackerConcurrent is for the race detector: writers of new and old keys, sweeps forced by
// tight limits, and readers, all at once.
func TestTrackerConcurrent(t *testing.T) {
	tr := NewTracker(Options{Window: time.Millisecond, MaxKeys: 4, MaxLines: 2})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 500 {
				now := t0.Add(time.Duration(i) * time.Millisecond)
				svc := fmt.Sprintf("s%d", (g+i)%7)
				tr.Record(svc, i%3, header("UP", fmt.Sprintf("b/s%d", i%5), "n"), lbA, now)
				tr.RecordAgent(svc, 0, lbB, "ready 100%", now)
				if i%50 == 0 {
					tr.Snapshot(svc, 0, now)
					tr.StateCounts(now)
				}
			}
		})
	}
	wg.Wait()
	kept := 0
	tr.each(func(_ key, l *lines) { kept += l.len() })
	if n := tr.total.Load(); n != int64(kept) || n > int64(linesPerKey*4) {
		t.Errorf("total %d, entries kept %d, bound %d", n, kept, linesPerKey*4)
	}
}
