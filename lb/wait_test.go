package lb

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

var changeAt = time.Unix(1000, 0)

const at = 1000.0

func line(node, server string, port int, state string, lastSeen float64) Server {
	return Server{Node: node, Server: server, Port: port, Source: "127.0.0.1", State: state, LastSeen: lastSeen, Weight: 1, TotalWeight: 2}
}

func TestWaiterUpdate(t *testing.T) {
	withScur := func(s Server, n int) Server { s.Scur = n; return s }
	for _, tc := range []struct {
		name    string
		change  Change
		updates []Snapshot
		done    bool
		nobody  bool
		pending []string
	}{
		{name: "nobody checks the service", change: Change{Target: Down},
			updates: []Snapshot{{Now: at + 1}}, done: true, nobody: true},
		{name: "nobody checks this instance", change: Change{Port: 8081, Target: Down},
			updates: []Snapshot{{Now: at + 1, Servers: []Server{line("lb1", "be/a", 8080, "UP", at-0.1)}}}, done: true, nobody: true},
		{name: "every line DOWN after the change", change: Change{Port: 8080, Target: Down},
			updates: []Snapshot{{Now: at + 1, Servers: []Server{line("lb1", "be/a", 8080, "DOWN", at+0.5), line("lb2", "be/a", 8080, "DOWN", at+0.6)}}}, done: true},
		{name: "a DOWN from before the change does not count", change: Change{Port: 8080, Target: Down},
			updates: []Snapshot{{Now: at + 1, Servers: []Server{line("lb1", "be/a", 8080, "DOWN", at-0.5)}}},
			pending: []string{"lb1 be/a (no check since the change; last said DOWN 1.5s ago)"}},
		{name: "one load balancer still UP", change: Change{Port: 8080, Target: Down},
			updates: []Snapshot{{Now: at + 1, Servers: []Server{line("lb1", "be/a", 8080, "DOWN", at+0.5), {Node: "lb2", Server: "be/a", Port: 8080, State: "UP", Counters: "1/2", LastSeen: at + 0.9}}}},
			pending: []string{"lb2 be/a (UP 1/2 0.1s ago)"}},
		{name: "a line that stops reporting stays pending", change: Change{Port: 8080, Target: Down},
			updates: []Snapshot{
				{Now: at, Servers: []Server{line("lb1", "be/a", 8080, "UP", at-0.1), line("lb2", "be/a", 8080, "UP", at-0.1)}},
				{Now: at + 40, Servers: []Server{line("lb1", "be/a", 8080, "DOWN", at+39)}},
			},
			pending: []string{"lb2 be/a (no check since the change; last said UP 40.1s ago)"}},
		{name: "other instances do not matter", change: Change{Port: 8080, Target: Down},
			updates: []Snapshot{{Now: at + 1, Servers: []Server{line("lb1", "be/a", 8080, "DOWN", at+0.5), line("lb1", "be/b", 8081, "UP", at+0.5)}}}, done: true},
		{name: "whole service waits on every instance", change: Change{Target: Down},
			updates: []Snapshot{{Now: at + 1, Servers: []Server{line("lb1", "be/a", 8080, "DOWN", at+0.5), line("lb1", "be/b", 8081, "UP", at+0.5)}}},
			pending: []string{"lb1 be/b (UP 0.5s ago)"}},
		{name: "drain: NOLB", change: Change{Port: 8080, Target: Drain},
			updates: []Snapshot{{Now: at + 1, Servers: []Server{line("lb1", "be/a", 8080, "NOLB", at+0.5)}}}, done: true},
		{name: "drain: DOWN stays DOWN on a 404 and takes no traffic", change: Change{Port: 8080, Target: Drain},
			updates: []Snapshot{{Now: at + 1, Servers: []Server{line("lb1", "be/a", 8080, "DOWN", at+0.5)}}}, done: true},
		{name: "down: NOLB is not DOWN", change: Change{Port: 8080, Target: Down},
			updates: []Snapshot{{Now: at + 1, Servers: []Server{line("lb1", "be/a", 8080, "NOLB", at+0.5)}}},
			pending: []string{"lb1 be/a (NOLB 0.5s ago)"}},
		{name: "up", change: Change{Port: 8080, Target: Up},
			updates: []Snapshot{{Now: at + 1, Servers: []Server{line("lb1", "be/a", 8080, "UP", at+0.5), line("lb2", "be/a", 8080, "DOWN", at+0.5)}}},
			pending: []string{"lb2 be/a (DOWN 0.5s ago)"}},
		{name: "sessions: DOWN with sessions left", change: Change{Port: 8080, Target: Down, Sessions: true},
			updates: []Snapshot{{Now: at + 1, Servers: []Server{withScur(line("lb1", "be/a", 8080, "DOWN", at+0.5), 1)}}},
			pending: []string{"lb1 be/a (DOWN with 1 sessions 0.5s ago)"}},
		{name: "sessions: DOWN with none", change: Change{Port: 8080, Target: Down, Sessions: true},
			updates: []Snapshot{{Now: at + 1, Servers: []Server{withScur(line("lb1", "be/a", 8080, "DOWN", at+0.5), 0)}}}, done: true},
		{name: "agent fetched maint after the change", change: Change{Port: 8080, Target: Down},
			updates: []Snapshot{{Now: at + 1, Agents: []Agent{{Port: 8080, Source: "10.0.0.1", Reply: "maint # test", LastSeen: at + 0.2}}}}, done: true},
		{name: "agent still got ready", change: Change{Port: 8080, Target: Down},
			updates: []Snapshot{{Now: at + 1, Agents: []Agent{{Port: 8080, Source: "10.0.0.1", Reply: "ready", LastSeen: at + 0.2}}}},
			pending: []string{`agent check from 10.0.0.1 for :8080 (got "ready" 0.8s ago)`}},
		{name: "agent asking for the whole service is not answered from an instance mark", change: Change{Port: 8080, Target: Down},
			updates: []Snapshot{{Now: at + 1, Agents: []Agent{{Port: 0, Source: "10.0.0.1", Reply: "ready", LastSeen: at + 0.2}}}}, done: true, nobody: true},
		{name: "agent drain and up", change: Change{Target: Drain},
			updates: []Snapshot{{Now: at + 1, Agents: []Agent{{Port: 0, Source: "a", Reply: "drain", LastSeen: at + 0.2}, {Port: 8080, Source: "b", Reply: "up, ready 50%", LastSeen: at + 0.2}}}},
			pending: []string{`agent check from b for :8080 (got "up, ready 50%" 0.8s ago)`}},
		{name: "a line in MAINT by its agent is no longer health-checked", change: Change{Port: 8080, Target: Down},
			updates: []Snapshot{{Now: at + 1,
				Servers: []Server{line("lb1", "be/a", 8080, "UP", at+0.1)},
				Agents:  []Agent{{Port: 8080, Source: "127.0.0.1", Reply: "maint # x", LastSeen: at + 0.3}}}}, done: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.change.At = changeAt
			w := NewWaiter(tc.change)
			var p Progress
			for _, s := range tc.updates {
				p = w.Update(s)
			}
			if p.Done != tc.done || p.Nobody != tc.nobody || !reflect.DeepEqual(p.Pending, tc.pending) {
				t.Errorf("progress = %+v\nwant done=%v nobody=%v pending=%q", p, tc.done, tc.nobody, tc.pending)
			}
		})
	}
}

// Just after hacheck (or a load balancer) starts, nobody counts yet: a reporter seen recently
// that does not count yet holds back "nobody checks" until it counts or goes quiet for Settle,
// by the snapshot's clock.
func TestWaiterSettles(t *testing.T) {
	settle := Settle.Seconds()
	unconfirmed := func(now, lastSeen float64) Snapshot {
		return Snapshot{Now: now, Unconfirmed: 1, UnconfirmedLastSeen: lastSeen}
	}
	down := Change{Port: 8080, Target: Down, At: changeAt}
	for _, tc := range []struct {
		name         string
		updates      []Snapshot
		done, nobody bool
	}{
		{"a reporter just seen that does not count yet", []Snapshot{unconfirmed(at+0.1, at)}, false, false},
		{"it keeps checking, still not counted", []Snapshot{unconfirmed(at+0.1, at), unconfirmed(at+2, at+1.9)}, false, false},
		{"it counts, but has not reported DOWN for an interval", []Snapshot{unconfirmed(at+0.1, at),
			{Now: at + 0.7, Servers: []Server{run("UP", at-0.5, at+0.6)}}}, false, false},
		{"it counts and reports DOWN", []Snapshot{unconfirmed(at+0.1, at),
			{Now: at + 2.1, Servers: []Server{run("DOWN", at+1.5, at+2)}}}, true, false},
		{"a one-off nc gone quiet for Settle", []Snapshot{unconfirmed(at+0.1, at), unconfirmed(at+settle+0.1, at)}, true, true},
		{"an nc seen long ago", []Snapshot{unconfirmed(at+0.1, at-settle)}, true, true},
		{"no unconfirmed reporter", []Snapshot{{Now: at + 0.1}}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := NewWaiter(down)
			var p Progress
			for _, s := range tc.updates {
				p = w.Update(s)
			}
			if p.Done != tc.done || p.Nobody != tc.nobody {
				t.Errorf("progress = %+v, want done=%v nobody=%v", p, tc.done, tc.nobody)
			}
			if !p.Done && len(p.Pending) == 0 {
				t.Errorf("not done, yet nothing pending to name on a timeout: %+v", p)
			}
		})
	}
}

// An nc-like single report delays Wait by at most Settle: the clock is the snapshot's.
func TestWaitOneOffDelaysAtMostSettle(t *testing.T) {
	seen := at - 0.01
	now := at
	p, err := Wait(context.Background(), Change{Target: Down, At: changeAt}, time.Millisecond, func(context.Context) (Snapshot, error) {
		now += 0.5
		if now > seen+Settle.Seconds()+0.5 {
			return Snapshot{}, errors.New("still waiting after Settle")
		}
		return Snapshot{Now: now, Unconfirmed: 1, UnconfirmedLastSeen: seen}, nil
	})
	if err != nil || !p.Done || !p.Nobody {
		t.Fatalf("Wait = %+v, %v; want done, nobody, within Settle of the one report", p, err)
	}
}

// run is a line that has said state since the time given, checked every 0.5 s.
func run(state string, since, lastSeen float64) Server {
	s := line("lb1", "be/a", 8080, state, lastSeen)
	s.StateSince, s.IntervalSeconds = since, 0.5
	return s
}

func agentRun(reply string, since, lastSeen float64) Agent {
	return Agent{Port: 8080, Source: "127.0.0.1", Reply: reply, LastSeen: lastSeen, ReplySince: since, IntervalSeconds: 0.5}
}

// The attacker's side of --wait: a report counts once the load balancer's own checks have
// said it for a whole check interval, so that one forged line, even from the load balancer's
// own address with its names, ends nothing.
func TestWaiterForgedReports(t *testing.T) {
	down := Change{Port: 8080, Target: Down, At: changeAt}
	for _, tc := range []struct {
		name    string
		change  Change
		updates []Snapshot
		done    bool
	}{
		{"a forged DOWN just after the change", down, []Snapshot{
			{Now: at + 0.45, Servers: []Server{run("DOWN", at+0.44, at+0.44)}},
		}, false},
		{"a forged DOWN, then HAProxy's own UP", down, []Snapshot{
			{Now: at + 0.45, Servers: []Server{run("DOWN", at+0.44, at+0.44)}},
			{Now: at + 0.6, Servers: []Server{run("UP", at+0.5, at+0.5)}},
		}, false},
		{"two forged DOWNs within one check interval", down, []Snapshot{
			{Now: at + 0.6, Servers: []Server{run("DOWN", at+0.44, at+0.54)}},
		}, false},
		{"HAProxy's DOWN for a whole check interval", down, []Snapshot{
			{Now: at + 1.6, Servers: []Server{run("DOWN", at+1.0, at+1.5)}},
		}, true},
		{"a server already DOWN: one more interval after the change", down, []Snapshot{
			{Now: at + 0.3, Servers: []Server{run("DOWN", at-5, at+0.2)}},
		}, false},
		{"a server already DOWN, checked an interval after the change", down, []Snapshot{
			{Now: at + 0.3, Servers: []Server{run("DOWN", at-5, at+0.2)}},
			{Now: at + 0.8, Servers: []Server{run("DOWN", at-5, at+0.7)}},
		}, true},
		{"an agent poll forged just after the change", down, []Snapshot{
			{Now: at + 0.2, Agents: []Agent{agentRun("maint # x", at+0.1, at+0.1)}},
		}, false},
		{"the agent polled again an interval later", down, []Snapshot{
			{Now: at + 0.2, Agents: []Agent{agentRun("maint # x", at+0.1, at+0.1)}},
			{Now: at + 0.7, Agents: []Agent{agentRun("maint # x", at+0.1, at+0.65)}},
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := NewWaiter(tc.change)
			var p Progress
			for _, s := range tc.updates {
				p = w.Update(s)
			}
			if p.Done != tc.done || p.Nobody {
				t.Errorf("progress = %+v, want done=%v", p, tc.done)
			}
		})
	}
}

func TestReplyWords(t *testing.T) {
	for reply, want := range map[string][]string{
		"maint # disk swap\n": {"maint"},
		"up, ready 30%\n":     {"up", "ready", "30%"},
		"DRAIN":               {"drain"},
		"#only a comment":     nil,
	} {
		if got := ReplyWords(reply); len(got)+len(want) > 0 && !reflect.DeepEqual(got, want) {
			t.Errorf("ReplyWords(%q) = %q, want %q", reply, got, want)
		}
	}
}

func TestWaitPollsUntilDone(t *testing.T) {
	calls := 0
	fetch := func(context.Context) (Snapshot, error) {
		calls++
		state := "UP"
		if calls >= 3 {
			state = "DOWN"
		}
		return Snapshot{Now: at + float64(calls), Servers: []Server{line("lb1", "be/a", 8080, state, at+float64(calls))}}, nil
	}
	p, err := Wait(context.Background(), Change{Port: 8080, Target: Down, At: changeAt}, time.Millisecond, fetch)
	if err != nil || !p.Done || calls != 3 {
		t.Fatalf("Wait = %+v, %v after %d fetches; want done after 3", p, err, calls)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p, err = Wait(ctx, Change{Port: 8080, Target: Down, At: changeAt}, time.Millisecond, func(context.Context) (Snapshot, error) {
		return Snapshot{Now: at, Servers: []Server{line("lb1", "be/a", 8080, "UP", at+1)}}, nil
	})
	if !errors.Is(err, context.Canceled) || p.Done || len(p.Pending) != 1 {
		t.Fatalf("Wait with its context done = %+v, %v; want the pending line and context.Canceled", p, err)
	}

	boom := errors.New("boom")
	if _, err := Wait(context.Background(), Change{}, time.Millisecond, func(context.Context) (Snapshot, error) { return Snapshot{}, boom }); !errors.Is(err, boom) {
		t.Fatalf("Wait with a failing fetch = %v, want it returned", err)
	}
}

func FuzzReplyWords(f *testing.F) {
	for _, s := range []string{"maint # x\n", "up, ready 30%", "", "#", ",,, \t"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, reply string) {
		for _, w := range ReplyWords(reply) {
			if w == "" || strings.ContainsAny(w, " \t,#\n\r") {
				t.Fatalf("ReplyWords(%q) has word %q", reply, w)
			}
		}
	})
}
