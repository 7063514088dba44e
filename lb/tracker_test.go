package lb

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	t0   = time.Unix(1_800_000_000, 0)
	lbA  = netip.MustParseAddr("10.0.0.1")
	lbB  = netip.MustParseAddr("10.0.0.2")
	lbA6 = netip.MustParseAddr("::ffff:10.0.0.1") // lbA as an IPv6 socket sees it
	evil = netip.MustParseAddr("10.6.6.6")
)

func header(state, name, node string) string {
	return state + "; address=10.9.9.9; port=8080; name=" + name + "; node=" + node + "; weight=1/2; scur=3/5; qcur=0"
}

// checkEvery is the check interval of the load balancers of these tests.
const checkEvery = 500 * time.Millisecond

// establish has a load balancer check (service, port) as HAProxy does, every checkEvery from
// start, until it counts; it returns when its last check was.
func establish(tr *Tracker, service string, port int, hdr string, source netip.Addr, start time.Time) time.Time {
	now := start
	for i := range minReports {
		now = start.Add(time.Duration(i) * checkEvery)
		tr.Record(service, port, hdr, 0, source, now)
	}
	return now
}

func establishAgent(tr *Tracker, service string, port int, source netip.Addr, reply string, start time.Time) time.Time {
	now := start
	for i := range minReports {
		now = start.Add(time.Duration(i) * checkEvery)
		tr.RecordAgent(service, port, source, reply, now)
	}
	return now
}

// The attacker's side first: reports from what is not a load balancer must never count.

func TestTrackerOneOffReportersDoNotCount(t *testing.T) {
	tr := NewTracker(Options{})
	// A curl with a copied header, from another address; an `nc` to the agent port.
	tr.Record("web", 8080, header("UP", "be/w1", "lb1"), 0, evil, t0)
	tr.RecordAgent("web", 8080, evil, "ready 100%", t0)
	// Even a burst: checks a load balancer makes are spread over time.
	for i := range 50 {
		tr.Record("web", 8080, header("DOWN", "be/w1", "lb1"), 0, lbB, t0.Add(time.Duration(i)*time.Millisecond))
	}
	snap := tr.Snapshot("web", 0, t0.Add(time.Second/2))
	if len(snap.Servers)+len(snap.Agents) != 0 || snap.Unconfirmed != 3 {
		t.Fatalf("one-off and burst reporters are shown as load balancers: %+v", snap)
	}
	// When the last of them was seen, so that --wait and the guard can tell a load balancer
	// that just began from a reporter gone quiet.
	if want := unixSeconds(t0.Add(49 * time.Millisecond)); snap.UnconfirmedLastSeen != want {
		t.Errorf("UnconfirmedLastSeen = %v, want %v (the burst's last report)", snap.UnconfirmedLastSeen, want)
	}
	if got := tr.StateCounts(t0.Add(time.Second / 2)); len(got) != 0 {
		t.Errorf("StateCounts counts them: %v", got)
	}
	// A reporter that keeps checking counts.
	last := establish(tr, "web", 8080, header("UP", "be/w1", "lb1"), lbA, t0)
	if snap := tr.Snapshot("web", 0, last); len(snap.Servers) != 1 || snap.Servers[0].Source != "10.0.0.1" {
		t.Errorf("a line reported %d times over %v does not count: %+v", minReports, last.Sub(t0), snap)
	}
	// One that stays away longer than the window starts over.
	later := last.Add(DefaultWindow + time.Second)
	tr.Record("web", 8080, header("UP", "be/w1", "lb1"), 0, lbA, later)
	if snap := tr.Snapshot("web", 0, later); len(snap.Servers) != 0 || snap.Unconfirmed != 1 {
		t.Errorf("a line back after the window counts at once: %+v", snap)
	}
}

func TestTrackerSources(t *testing.T) {
	tr := NewTracker(Options{Sources: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/30")}})
	last := establish(tr, "web", 8080, header("UP", "be/w1", "lb1"), lbA6, t0)
	establish(tr, "web", 8080, header("UP", "be/w1", "lb1"), evil, t0)
	establishAgent(tr, "web", 8080, evil, "ready 100%", t0)
	snap := tr.Snapshot("web", 0, last)
	if len(snap.Servers) != 1 || snap.Servers[0].Source != "10.0.0.1" || len(snap.Agents) != 0 || snap.Unconfirmed != 0 {
		t.Errorf("with lb_sources 10.0.0.0/30, Snapshot = %+v; want lbA's line alone", snap)
	}
}

// A flood of invented reporters, from one address or many, never pushes out a load balancer
// that counts, and never keeps one from coming to count: not even one that had checked only
// once when the flood began (a restart of hacheck).
func TestTrackerFloodKeepsLoadBalancers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sources int
		from    func(i int) netip.Addr
	}{
		{"from the load balancer's own address", 1, func(int) netip.Addr { return lbA }},
		{"from another address", 1, func(int) netip.Addr { return evil }},
		{"from 64 addresses", 64, func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 7, byte(i / 256), byte(i)}) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := NewTracker(Options{Window: 30 * time.Second, MaxBytes: 1 << 20})
			hdr := header("UP", "be_solo/solo1", "lb1")
			up := establish(tr, "solo", 1, hdr, lbA, t0) // an established load balancer
			tr.Record("web", 1, header("UP", "be_web/app1", "lb1"), 0, lbA, t0)
			// 100,000 invented lines and agent polls, while lbA keeps checking both services.
			now := up
			for i := range 100_000 {
				now = up.Add(time.Duration(i) * 100 * time.Microsecond)
				src := tc.from(i % tc.sources)
				if i%2 == 0 {
					tr.Record(fmt.Sprintf("svc%d", i), 1, header("UP", fmt.Sprintf("b%d/s", i), "lb1"), 0, src, now)
				} else {
					tr.RecordAgent(fmt.Sprintf("svc%d", i), i%65535+1, src, "ready 100%", now)
				}
				if i%5000 == 0 { // every 0.5 s
					tr.Record("solo", 1, hdr, 0, lbA, now)
					tr.Record("web", 1, header("UP", "be_web/app1", "lb1"), 0, lbA, now)
				}
				if tr.estBytes+tr.newBytes > 1<<20 {
					t.Fatalf("after %d reports the tracker holds %d bytes, over its budget of 1 MiB", i+1, tr.estBytes+tr.newBytes)
				}
			}
			for _, svc := range []string{"solo", "web"} {
				if snap := tr.Snapshot(svc, 0, now); len(snap.Servers) != 1 || snap.Servers[0].Node != "lb1" {
					t.Errorf("after the flood, Snapshot(%s) = %+v; want lb1's line", svc, snap)
				}
			}
			if tr.Dropped() == 0 {
				t.Error("the flood dropped nothing: the budget was not reached")
			}
		})
	}
}

func TestTrackerSnapshotBounded(t *testing.T) {
	tr := NewTracker(Options{})
	var last time.Time
	for i := range maxSnapshotEntries + 200 {
		last = establish(tr, "web", 1, header("UP", fmt.Sprintf("be/s%04d", i), strings.Repeat("n", MaxNameBytes)), lbA, t0)
	}
	for i := range 30 {
		establishAgent(tr, "web", i+1, netip.AddrFrom4([4]byte{10, 1, 0, byte(i)}), "ready 100%", t0)
	}
	snap := tr.Snapshot("web", 0, last)
	if len(snap.Servers) != maxSnapshotEntries || len(snap.Agents) != 30 || snap.Omitted != 200 {
		t.Errorf("Snapshot holds %d servers, %d agents, omitted %d; want %d, 30 and 200",
			len(snap.Servers), len(snap.Agents), snap.Omitted, maxSnapshotEntries)
	}
}

// The caller's side.

func TestTrackerSnapshot(t *testing.T) {
	tr := NewTracker(Options{Window: 30 * time.Second})
	establish(tr, "web", 8080, header("UP", "be/w1", "lb2"), lbB, t0)
	establish(tr, "web", 8080, header("UP 2/3", "be/w1", "lb1"), lbA, t0)
	tr.Record("web", 8080, header("DOWN", "be/w1", "lb1"), 0, lbA6, t0.Add(2*time.Second))  // same line, newer
	establish(tr, "web", 8080, header("UP", "alt/w1", "lb1"), lbA, t0.Add(-40*time.Second)) // out of the window
	establish(tr, "web", 9090, header("NOLB", "be/w1", "lb1"), lbA, t0)
	tr.Record("web", 8080, "garbage", 0, lbA, t0)
	establish(tr, "api", 8080, header("UP", "be/a1", "lb1"), lbA, t0)
	establishAgent(tr, "web", 0, lbB, "maint # deploy", t0)
	establishAgent(tr, "web", 8080, lbA, "ready 100%", t0)
	tr.RecordAgent("web", 8080, lbA6, "drain", t0.Add(2*time.Second))

	now := t0.Add(3 * time.Second)
	got := tr.Snapshot("web", 0, now)
	line := func(port int, node, server, source, state, counters string, seen, since time.Time, interval float64, reports int) Server {
		return Server{Port: port, Node: node, Server: server, Source: source, State: state, Counters: counters,
			Weight: 1, TotalWeight: 2, Scur: 3, BackendScur: 5,
			LastSeen: unixSeconds(seen), AgeSeconds: now.Sub(seen).Seconds(), StateSince: unixSeconds(since), IntervalSeconds: interval,
			Reports: reports}
	}
	t1 := t0.Add(time.Second)
	want := Snapshot{Service: "web", WindowSeconds: 30, Now: unixSeconds(now),
		Servers: []Server{
			line(8080, "lb1", "be/w1", "10.0.0.1", "DOWN", "", t0.Add(2*time.Second), t0.Add(2*time.Second), 2.0/3, 4),
			line(9090, "lb1", "be/w1", "10.0.0.1", "NOLB", "", t1, t0, 0.5, 3),
			line(8080, "lb2", "be/w1", "10.0.0.2", "UP", "", t1, t0, 0.5, 3),
		},
		Agents: []Agent{
			{Port: 0, Source: "10.0.0.2", Reply: "maint # deploy", LastSeen: unixSeconds(t1), AgeSeconds: 2, ReplySince: unixSeconds(t0), IntervalSeconds: 0.5, Reports: 3},
			{Port: 8080, Source: "10.0.0.1", Reply: "drain", LastSeen: unixSeconds(t0.Add(2 * time.Second)), AgeSeconds: 1,
				ReplySince: unixSeconds(t0.Add(2 * time.Second)), IntervalSeconds: 2.0 / 3, Reports: 4},
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
	establish(tr, "web", 8080, header("UP", "be/w1", "lb1"), lbA, t0)
	establish(tr, "web", 8080, header("UP 1/2", "be/w1", "lb2"), lbB, t0)
	establish(tr, "web", 9090, header("NOLB", "be/w2", "lb1"), lbA, t0)
	establish(tr, "web", 9090, header("MAINT", "be/w3", "lb1"), lbA, t0)
	establish(tr, "api", 1, header("DOWN 1/2", "api/a", "lb1"), lbA, t0)
	establish(tr, "old", 1, header("DOWN", "old/a", "lb1"), lbA, t0.Add(-time.Hour))
	want := map[string]map[string]int{
		"web": {"UP": 2, "NOLB": 1, "other": 1},
		"api": {"DOWN": 1},
	}
	if got := tr.StateCounts(t0.Add(time.Second)); !reflect.DeepEqual(got, want) {
		t.Errorf("StateCounts = %v, want %v", got, want)
	}
}

func TestTrackerReloadWindow(t *testing.T) {
	tr := NewTracker(Options{})
	if tr.Window() != DefaultWindow {
		t.Fatalf("default window %v, want %v", tr.Window(), DefaultWindow)
	}
	last := establish(tr, "a", 1, header("UP", "b/s", "n"), lbA, t0)
	tr.SetOptions(Options{Window: 5 * time.Second})
	if got := tr.Snapshot("a", 0, last.Add(6*time.Second)); len(got.Servers) != 0 || got.WindowSeconds != 5 {
		t.Errorf("after a reload to a 5s window, a line 6s old is still reported: %+v", got)
	}
}

// TestTrackerConcurrent is for the race detector: writers of new and old keys, evictions forced
// by a tight budget, and readers, all at once.
func TestTrackerConcurrent(t *testing.T) {
	tr := NewTracker(Options{Window: 50 * time.Millisecond, MaxBytes: 64 << 10})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				now := t0.Add(time.Duration(i) * time.Millisecond)
				svc := fmt.Sprintf("s%d", (g+i)%37)
				tr.Record(svc, i%3, header("UP", fmt.Sprintf("b/s%d", i%5), "n"), 0, lbA, now)
				tr.RecordAgent(svc, 0, netip.AddrFrom4([4]byte{10, 0, byte(g), byte(i % 7)}), "ready 100%", now)
				if i%50 == 0 {
					tr.Snapshot(svc, 0, now)
					tr.StateCounts(now)
				}
			}
		})
	}
	wg.Wait()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	est, fresh := 0, 0
	for _, e := range tr.entries {
		est, fresh = count(e, est, fresh)
	}
	listed := 0
	for _, l := range tr.newcomers {
		for e := l.head; e != nil; e = e.next {
			listed += e.cost
		}
	}
	if est != tr.estBytes || fresh != tr.newBytes || listed != fresh || est+fresh > 64<<10 {
		t.Errorf("accounting: established %d (kept %d), newcomers %d (kept %d, listed %d), budget %d",
			tr.estBytes, est, tr.newBytes, fresh, listed, 64<<10)
	}
}

func count(e *entry, est, fresh int) (int, int) {
	if e.established {
		return est + e.cost, fresh
	}
	return est, fresh + e.cost
}

// FuzzTrackerRecord: whatever headers, services and sources arrive, and in whatever order of
// time, the tracker's accounting matches what it keeps and stays within its budget.
func FuzzTrackerRecord(f *testing.F) {
	f.Add(header("UP", "be/w1", "lb1"), "web", uint16(8080), []byte{10, 0, 0, 1}, uint16(500), uint8(5))
	f.Add("DOWN 1/2; name=b/s; node="+strings.Repeat("n", 200), "a", uint16(0), []byte{1, 2, 3, 4}, uint16(0), uint8(3))
	f.Add("garbage", "all", uint16(1), []byte{}, uint16(60000), uint8(1))
	f.Fuzz(func(t *testing.T, hdr, service string, port uint16, src []byte, stepMs uint16, n uint8) {
		const budget = 16 * entryOverhead * 4
		tr := NewTracker(Options{Window: 10 * time.Second, MaxBytes: budget})
		var a [4]byte
		copy(a[:], src)
		now := t0
		for i := range int(n%32) + 1 {
			source := netip.AddrFrom4([4]byte{a[0], a[1], a[2], a[3] + byte(i%3)})
			now = now.Add(time.Duration(stepMs) * time.Millisecond)
			tr.Record(service, int(port), hdr, 0, source, now)
			tr.RecordAgent(service, int(port)+i%2, source, hdr, now)
		}
		snap := tr.Snapshot(service, 0, now)
		if len(snap.Servers) > maxSnapshotEntries || len(snap.Agents) > maxSnapshotEntries {
			t.Fatalf("snapshot too long: %d, %d", len(snap.Servers), len(snap.Agents))
		}
		est, fresh := 0, 0
		for _, e := range tr.entries {
			est, fresh = count(e, est, fresh)
		}
		if est != tr.estBytes || fresh != tr.newBytes || est+fresh > budget {
			t.Fatalf("accounting: established %d (kept %d), newcomers %d (kept %d), budget %d", tr.estBytes, est, tr.newBytes, fresh, budget)
		}
	})
}

// What hacheck answered a line's last check is kept with it: the guard reads a line still UP
// whose check hacheck just failed as leaving.
func TestTrackerKeepsTheAnswer(t *testing.T) {
	tr := NewTracker(Options{})
	last := establish(tr, "web", 8080, header("UP", "be/a", "lb1"), lbA, t0)
	if snap := tr.Snapshot("web", 0, last); len(snap.Servers) != 1 || snap.Servers[0].LastCode != 0 {
		t.Fatalf("no answer known: %+v", snap.Servers)
	}
	for i, code := range []int{200, 503, 200} {
		now := last.Add(time.Duration(i+1) * checkEvery)
		tr.Record("web", 8080, header("UP", "be/a", "lb1"), code, lbA, now)
		if snap := tr.Snapshot("web", 0, now); len(snap.Servers) != 1 || snap.Servers[0].LastCode != code {
			t.Fatalf("after answering %d: %+v", code, snap.Servers)
		}
	}
}
