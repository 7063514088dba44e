package lbwait

// The JSON of GET /lb/<service>. These mirror the server's types until they are shared.

// Snapshot is what the load balancers reported about one service within the window.
type Snapshot struct {
	Service       string   `json:"service"`
	WindowSeconds float64  `json:"window_seconds"`
	Now           float64  `json:"now"`
	Servers       []Server `json:"servers"`
	Agents        []Agent  `json:"agents"`
	// MinRemainingWeight is the server's min_remaining_weight, for the guard the CLI applies.
	MinRemainingWeight int `json:"min_remaining_weight"`
}

// Server is the last send-state header one load balancer server line sent.
type Server struct {
	Port        int     `json:"port"`
	Node        string  `json:"node"`
	Server      string  `json:"server"` // backend/server
	Source      string  `json:"source"`
	State       string  `json:"state"`
	Counters    string  `json:"counters"`
	Weight      int     `json:"weight"`
	TotalWeight int     `json:"total_weight"`
	Scur        int     `json:"scur"`
	BackendScur int     `json:"backend_scur"`
	LastSeen    float64 `json:"last_seen"`
	AgeSeconds  float64 `json:"age_seconds"`
}

// Agent is the last reply the agent-check listener gave one load balancer.
type Agent struct {
	Port       int     `json:"port"`
	Source     string  `json:"source"`
	Reply      string  `json:"reply"`
	LastSeen   float64 `json:"last_seen"`
	AgeSeconds float64 `json:"age_seconds"`
}
