package lb

import (
	"errors"
	"testing"
)

func TestGuard(t *testing.T) {
	up := func(node, server string, w, total int) Server {
		return Server{Node: node, Server: server, State: "UP", Weight: w, TotalWeight: total}
	}
	tests := []struct {
		name    string
		servers []Server
		min     int
		want    string // "" for no refusal
	}{
		{"nobody checks", nil, 0, ""},
		{"others left", []Server{up("lb1", "be/a", 1, 3), up("lb2", "be/a", 1, 3)}, 0, ""},
		{"last usable server", []Server{up("lb1", "be/a", 1, 3), up("lb2", "be/a", 1, 1)}, 0,
			"be/a is the last usable server of backend be on load balancer lb2 (weight 1/1)"},
		{"below the minimum", []Server{up("lb1", "web/a", 2, 5)}, 4,
			"taking web/a out would leave backend web on load balancer lb1 with weight 3, below the minimum 4"},
		{"at the minimum", []Server{up("lb1", "web/a", 2, 5)}, 3, ""},
		{"rise/fall counters still UP", []Server{{Node: "lb1", Server: "be/a", State: "UP", Counters: "1/2", Weight: 1, TotalWeight: 1}}, 0,
			"be/a is the last usable server of backend be on load balancer lb1 (weight 1/1)"},
		{"already DOWN", []Server{{Node: "lb1", Server: "be/a", State: "DOWN", Weight: 0, TotalWeight: 0}}, 0, ""},
		{"draining", []Server{{Node: "lb1", Server: "be/a", State: "NOLB", Weight: 1, TotalWeight: 1}}, 0, ""},
		{"weight 0 carries nothing", []Server{up("lb1", "be/a", 0, 0)}, 0, ""},
		{"weight above a stale total", []Server{up("lb1", "be/a", 3, 2)}, 0,
			"be/a is the last usable server of backend be on load balancer lb1 (weight 3/2)"},
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
				t.Fatalf("Guard = %v, want %q", err, tt.want)
			}
		})
	}
}
