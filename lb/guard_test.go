package lb

import (
	"errors"
	"testing"
)

func TestGuard(t *testing.T) {
	line := func(node, server, state string, w, total int) Server {
		return Server{Node: node, Server: server, Source: "10.0.0." + node[len(node)-1:], State: state, Weight: w, TotalWeight: total}
	}
	up := func(node, server string, w, total int) Server { return line(node, server, "UP", w, total) }
	tests := []struct {
		name    string
		servers []Server
		min     int
		want    string // "" for no refusal
	}{
		{"nobody checks", nil, 0, ""},
		{"others left", []Server{up("lb1", "be/a", 1, 3), up("lb2", "be/a", 1, 3)}, 0, ""},
		{"last usable server", []Server{up("lb1", "be/a", 1, 3), up("lb2", "be/a", 1, 1)}, 0,
			"backend be on load balancer lb2 would have no usable server left (weight 1 of 1 taken out)"},
		{"two instances of this host are the whole backend", []Server{up("lb1", "be/a", 1, 2), up("lb1", "be/b", 1, 2)}, 0,
			"backend be on load balancer lb1 would have no usable server left (weight 2 of 2 taken out)"},
		{"two backends on two load balancers", []Server{up("lb2", "web/a", 2, 2), up("lb1", "api/a", 1, 1), up("lb1", "web/a", 1, 4)}, 0,
			"backend api on load balancer lb1 would have no usable server left (weight 1 of 1 taken out); " +
				"backend web on load balancer lb2 would have no usable server left (weight 2 of 2 taken out)"},
		{"below the minimum", []Server{up("lb1", "web/a", 2, 5)}, 4,
			"backend web on load balancer lb1 would keep weight 3 of 5, below min_remaining_weight 4"},
		{"at the minimum", []Server{up("lb1", "web/a", 2, 5)}, 3, ""},
		{"rise/fall counters still UP", []Server{{Node: "lb1", Server: "be/a", State: "UP", Counters: "1/2", Weight: 1, TotalWeight: 1}}, 0,
			"backend be on load balancer lb1 would have no usable server left (weight 1 of 1 taken out)"},
		{"already DOWN", []Server{line("lb1", "be/a", "DOWN", 0, 0)}, 0, ""},
		{"draining", []Server{line("lb1", "be/a", "NOLB", 1, 1)}, 0, ""},
		{"the other instance already DOWN", []Server{up("lb1", "be/a", 1, 1), line("lb1", "be/b", "DOWN", 0, 1)}, 0,
			"backend be on load balancer lb1 would have no usable server left (weight 1 of 1 taken out)"},
		{"weight 0 carries nothing", []Server{up("lb1", "be/a", 0, 0)}, 0, ""},
		{"weight above a stale total", []Server{up("lb1", "be/a", 3, 2)}, 0,
			"backend be on load balancer lb1 would have no usable server left (weight 3 of 2 taken out)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Guard(tt.servers, tt.min)
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
