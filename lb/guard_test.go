package lb

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/hacheck/hacheck/spool"
)

func TestGuard(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	// line is one report of lb's server line be/<server> for port, seen ago seconds before now.
	line := func(lb, server string, port int, state string, w, total int, ago float64) Server {
		return Server{Node: lb, Server: server, Port: port, Source: "10.0.0." + lb[len(lb)-1:], State: state,
			Weight: w, TotalWeight: total, LastSeen: float64(now.Unix()) - ago}
	}
	up := func(lb, server string, port, w, total int) Server { return line(lb, server, port, "UP", w, total, 0.5) }
	web := func(servers ...Server) Snapshot { return Snapshot{Service: "web", Servers: servers} }
	down := func(service string, port int) spool.Mark {
		return spool.Mark{Service: service, Port: port, Reason: "x"}
	}
	drain := func(service string, port int) spool.Mark {
		return spool.Mark{Service: service, Port: port, Reason: "x", Drain: true}
	}
	weight := func(service string, port, pct int) spool.Mark {
		return spool.Mark{Service: service, Port: port, Reason: "x", Weight: &pct}
	}
	rising := line("lb1", "be/a", 8080, "DOWN", 1, 2, 0.3)
	rising.Counters = "1/2"
	failing := up("lb1", "be/a", 8080, 1, 2)
	failing.LastCode = 503
	recovering := up("lb1", "be/a", 8080, 1, 2)
	recovering.Counters, recovering.LastCode = "2/3", 200
	expired := down("web", 8080)
	expired.Expiration = now.Add(-time.Second)

	tests := []struct {
		name   string
		snaps  []Snapshot
		before []spool.Mark // in the spool already
		change []spool.Mark
		min    int
		want   string // "" for no refusal
	}{
		{"nobody checks", nil, nil, []spool.Mark{down("web", 8080)}, 0, ""},
		{"others left", []Snapshot{web(up("lb1", "be/a", 8080, 1, 3), up("lb2", "be/a", 8080, 1, 3))}, nil,
			[]spool.Mark{down("web", 8080)}, 0, ""},
		{"last usable server", []Snapshot{web(up("lb1", "be/a", 8080, 1, 3), up("lb2", "be/a", 8080, 1, 1))}, nil,
			[]spool.Mark{down("web", 8080)}, 0,
			"backend be on load balancer lb2 would have no usable server left (weight 1 of 1 taken out)"},
		{"the whole service takes both instances", []Snapshot{web(up("lb1", "be/a", 8080, 1, 2), up("lb1", "be/b", 8081, 1, 2))}, nil,
			[]spool.Mark{down("web", 0)}, 0,
			"backend be on load balancer lb1 would have no usable server left (weight 2 of 2 taken out)"},
		{"one instance of two", []Snapshot{web(up("lb1", "be/a", 8080, 1, 2), up("lb1", "be/b", 8081, 1, 2))}, nil,
			[]spool.Mark{down("web", 8080)}, 0, ""},
		// The second operator: the first mark is written, the load balancer has not acted yet.
		{"the other instance's mark not reported yet", []Snapshot{web(up("lb1", "be/a", 8080, 1, 2), up("lb1", "be/b", 8081, 1, 2))},
			[]spool.Mark{down("web", 8080)}, []spool.Mark{down("web", 8081)}, 0,
			"backend be on load balancer lb1 would have no usable server left (weight 2 of 2 taken out, 1 of it by marks already on this host that it has not reported yet)"},
		{"the other instance drained, not reported yet", []Snapshot{web(up("lb1", "be/a", 8080, 1, 2), up("lb1", "be/b", 8081, 1, 2))},
			[]spool.Mark{drain("web", 8080)}, []spool.Mark{down("web", 8081)}, 0,
			"backend be on load balancer lb1 would have no usable server left (weight 2 of 2 taken out, 1 of it by marks already on this host that it has not reported yet)"},
		{"the whole service's mark, then an instance", []Snapshot{web(up("lb1", "be/a", 8080, 1, 3), up("lb1", "be/b", 8081, 1, 3))},
			[]spool.Mark{down("web", 0)}, []spool.Mark{down("web", 8081)}, 0, ""}, // takes nothing more away
		{"the host-wide mark", []Snapshot{web(up("lb1", "be/a", 8080, 1, 1)), {Service: "api", Servers: []Server{up("lb1", "api/a", 9090, 1, 2)}}},
			nil, []spool.Mark{down("all", 0)}, 0,
			"backend be on load balancer lb1 would have no usable server left (weight 1 of 1 taken out)"},
		{"the host-wide mark already there", []Snapshot{web(up("lb1", "be/a", 8080, 1, 2), up("lb1", "be/b", 8081, 1, 2))},
			[]spool.Mark{down("all", 0)}, []spool.Mark{down("web", 8081)}, 0, ""},
		{"an expired mark counts for nothing", []Snapshot{web(up("lb1", "be/a", 8080, 1, 2), up("lb1", "be/b", 8081, 1, 2))},
			[]spool.Mark{expired}, []spool.Mark{down("web", 8081)}, 0, ""},
		// Once the load balancer reports the first instance out, its total says so: no double count.
		{"the other instance reported DOWN since", []Snapshot{web(line("lb1", "be/a", 8080, "DOWN", 1, 1, 0.1), line("lb1", "be/b", 8081, "UP", 1, 1, 0.3))},
			[]spool.Mark{down("web", 8080)}, []spool.Mark{down("web", 8081)}, 0,
			"backend be on load balancer lb1 would have no usable server left (weight 1 of 1 taken out)"},
		{"the newest report's total counts", []Snapshot{web(line("lb1", "be/a", 8080, "DOWN", 1, 1, 0.1), line("lb1", "be/b", 8081, "UP", 1, 2, 0.3))},
			[]spool.Mark{down("web", 8080)}, []spool.Mark{down("web", 8081)}, 0,
			"backend be on load balancer lb1 would have no usable server left (weight 1 of 1 taken out)"},
		{"a server of another host keeps it", []Snapshot{web(line("lb1", "be/a", 8080, "DOWN", 1, 2, 0.1), line("lb1", "be/b", 8081, "UP", 1, 2, 0.3))},
			nil, []spool.Mark{down("web", 8081)}, 0, ""},
		{"a rise under way may have ended", []Snapshot{web(rising, up("lb1", "be/b", 8081, 1, 2))},
			[]spool.Mark{down("web", 8080)}, []spool.Mark{down("web", 8081)}, 0,
			"backend be on load balancer lb1 would have no usable server left (weight 2 of 2 taken out, 1 of it by marks already on this host that it has not reported yet)"},
		{"weight 0% is a down", []Snapshot{web(up("lb1", "be/a", 8080, 1, 1))}, nil, []spool.Mark{weight("web", 0, 0)}, 0,
			"backend be on load balancer lb1 would have no usable server left (weight 1 of 1 taken out)"},
		{"weight 30% of weight 1 rounds to 0", []Snapshot{web(up("lb1", "be/a", 8080, 1, 1))}, nil, []spool.Mark{weight("web", 8080, 30)}, 0,
			"backend be on load balancer lb1 would have no usable server left (weight 1 of 1 taken out)"},
		{"weight 50% of 4 leaves 2", []Snapshot{web(up("lb1", "be/a", 8080, 4, 4))}, nil, []spool.Mark{weight("web", 8080, 50)}, 0, ""},
		{"weight 50% below the minimum", []Snapshot{web(up("lb1", "be/a", 8080, 4, 6))}, nil, []spool.Mark{weight("web", 8080, 50)}, 5,
			"backend be on load balancer lb1 would keep weight 4 of 6 (weight 2 taken out), below min_remaining_weight 5"},
		{"weight above 100% takes nothing", []Snapshot{web(up("lb1", "be/a", 8080, 1, 1))}, nil, []spool.Mark{weight("web", 8080, 200)}, 0, ""},
		{"a weight mark not reported yet, then the other instance", []Snapshot{web(up("lb1", "be/a", 8080, 1, 2), up("lb1", "be/b", 8081, 1, 2))},
			[]spool.Mark{weight("web", 8080, 0)}, []spool.Mark{down("web", 8081)}, 0,
			"backend be on load balancer lb1 would have no usable server left (weight 2 of 2 taken out, 1 of it by marks already on this host that it has not reported yet)"},
		{"a weight told after the line's last report", []Snapshot{{Service: "web",
			Servers: []Server{up("lb1", "be/a", 8080, 1, 2), up("lb1", "be/b", 8081, 1, 2)},
			Agents:  []Agent{{Port: 8080, Source: "10.0.0.1", Reply: "ready 50%", ReplySince: float64(now.Unix())}}}},
			[]spool.Mark{weight("web", 8080, 50)}, []spool.Mark{down("web", 8081)}, 0,
			"backend be on load balancer lb1 would have no usable server left (weight 2 of 2 taken out, 1 of it by marks already on this host that it has not reported yet)"},
		// be/a reports weight 1, 50% of its 2, after its agent was told 50%: halved again it
		// would count as 0, but what it reports is what stays.
		{"an applied weight, then the other instance", []Snapshot{{Service: "web",
			Servers: []Server{up("lb1", "be/a", 8080, 1, 2), up("lb1", "be/b", 8081, 1, 2)},
			Agents:  []Agent{{Port: 8080, Source: "10.0.0.1", Reply: "ready 50%", ReplySince: float64(now.Unix()) - 5}}}},
			[]spool.Mark{weight("web", 8080, 50)}, []spool.Mark{down("web", 8081)}, 0, ""},
		{"two backends on two load balancers", []Snapshot{web(up("lb2", "web/a", 8080, 2, 2), up("lb1", "web/a", 8080, 1, 4)),
			{Service: "api", Servers: []Server{up("lb1", "api/a", 9090, 1, 1)}}}, nil, []spool.Mark{down("web", 0), down("api", 0)}, 0,
			"backend api on load balancer lb1 would have no usable server left (weight 1 of 1 taken out); " +
				"backend web on load balancer lb2 would have no usable server left (weight 2 of 2 taken out)"},
		{"below the minimum", []Snapshot{web(up("lb1", "web/a", 8080, 2, 5))}, nil, []spool.Mark{down("web", 8080)}, 4,
			"backend web on load balancer lb1 would keep weight 3 of 5 (weight 2 taken out), below min_remaining_weight 4"},
		{"at the minimum", []Snapshot{web(up("lb1", "web/a", 8080, 2, 5))}, nil, []spool.Mark{down("web", 8080)}, 3, ""},
		{"rise/fall counters still UP", []Snapshot{web(Server{Node: "lb1", Server: "be/a", Port: 8080, State: "UP", Counters: "1/2", Weight: 1, TotalWeight: 1})}, nil,
			[]spool.Mark{down("web", 8080)}, 0,
			"backend be on load balancer lb1 would have no usable server left (weight 1 of 1 taken out)"},
		// A line still UP whose last check hacheck failed (its service is failing, no mark:
		// HAProxy takes it out after fall such checks, and its header says UP until the one
		// before the last) is about to leave on its own: the other instance is its backend's
		// last server.
		{"the other instance failing its checks", []Snapshot{web(failing, up("lb1", "be/b", 8081, 1, 2))}, nil,
			[]spool.Mark{down("web", 8081)}, 0,
			"backend be on load balancer lb1 would have no usable server left (weight 1 of 2 taken out, 1 more by servers failing their checks)"},
		{"the failing instance itself", []Snapshot{web(failing, up("lb1", "be/b", 8081, 1, 2))}, nil,
			[]spool.Mark{down("web", 8080)}, 0, ""},
		{"recovering: UP with counters, its check passing", []Snapshot{web(recovering, up("lb1", "be/b", 8081, 1, 2))}, nil,
			[]spool.Mark{down("web", 8081)}, 0, ""},
		{"already DOWN", []Snapshot{web(line("lb1", "be/a", 8080, "DOWN", 0, 0, 1))}, nil, []spool.Mark{down("web", 8080)}, 0, ""},
		{"draining", []Snapshot{web(line("lb1", "be/a", 8080, "NOLB", 1, 1, 1))}, nil, []spool.Mark{down("web", 8080)}, 0, ""},
		{"an emptied backend the change does not touch", []Snapshot{web(line("lb1", "be/a", 8080, "UP", 1, 1, 1)),
			{Service: "api", Servers: []Server{up("lb1", "api/a", 9090, 1, 2)}}}, []spool.Mark{down("web", 0)}, []spool.Mark{down("api", 0)}, 0, ""},
		{"weight 0 carries nothing", []Snapshot{web(up("lb1", "be/a", 8080, 0, 0))}, nil, []spool.Mark{down("web", 8080)}, 0, ""},
		{"weight above a stale total", []Snapshot{web(up("lb1", "be/a", 8080, 3, 2))}, nil, []spool.Mark{down("web", 8080)}, 0,
			"backend be on load balancer lb1 would have no usable server left (weight 3 of 2 taken out)"},
		{"the same snapshot twice counts once", []Snapshot{web(up("lb1", "be/a", 8080, 1, 2)), web(up("lb1", "be/a", 8080, 1, 2))}, nil,
			[]spool.Mark{down("web", 8080)}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := spool.NewSet(tt.before...)
			err := Guard(tt.snaps, before, before.With(tt.change...), now, tt.min)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Guard refused: %v", err)
				}
				return
			}
			var ge *GuardError
			if !errors.As(err, &ge) || err.Error() != tt.want {
				t.Fatalf("Guard = %v\nwant %q", err, tt.want)
			}
		})
	}
}

func TestGuardServices(t *testing.T) {
	held := spool.NewSet(spool.Mark{Service: "api", Port: 80}, spool.Mark{Service: "web", Port: 8080}, spool.Mark{Service: "all"})
	got := GuardServices(held, []spool.Mark{{Service: "web", Port: 8081}, {Service: "db"}})
	if want := []string{"all", "api", "db", "web"}; !slices.Equal(got, want) {
		t.Fatalf("GuardServices = %v, want %v", got, want)
	}
}
