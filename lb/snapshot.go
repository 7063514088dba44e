package lb

import "strings"

// Snapshot is what GET /lb/<service> answers: every established load balancer server line that
// checked the service within the window, and every agent reply given for it within the window
// to an established poller (Tracker says who is established).
type Snapshot struct {
	Service       string  `json:"service"`
	WindowSeconds float64 `json:"window_seconds"`
	Now           float64 `json:"now"` // unix seconds, when the snapshot was taken
	// Servers are sorted by node, then server, then port and source; never nil.
	Servers []Server `json:"servers"`
	// Agents are sorted by port, then source; never nil.
	Agents []Agent `json:"agents"`
	// Unconfirmed counts the reporters seen within the window that do not count (yet): they
	// have not checked repeatedly, as a load balancer does.
	Unconfirmed int `json:"unconfirmed"`
	// Omitted counts the established lines and agents left out of the lists, which hold
	// 1,000 entries each at most.
	Omitted int `json:"omitted"`
	// MinRemainingWeight is the server's min_remaining_weight, so that a client applies the
	// same Guard as the server.
	MinRemainingWeight int `json:"min_remaining_weight"`
}

// Server is the last send-state header one load balancer server line sent for a (service,
// port): a line is the HAProxy instance (Node), its backend/server (Server) and the address
// its checks came from (Source).
type Server struct {
	Port        int     `json:"port"`
	Node        string  `json:"node"`
	Server      string  `json:"server"` // "<backend>/<server>"
	Source      string  `json:"source"`
	State       string  `json:"state"`    // UP, DOWN, NOLB, "no check", ...
	Counters    string  `json:"counters"` // "2/3" during a rise or fall, else ""
	Weight      int     `json:"weight"`
	TotalWeight int     `json:"total_weight"` // the backend's total usable weight
	Scur        int     `json:"scur"`
	BackendScur int     `json:"backend_scur"`
	LastSeen    float64 `json:"last_seen"` // unix seconds
	AgeSeconds  float64 `json:"age_seconds"`
	// StateSince is when the line's unbroken run of reports with this State began (unix
	// seconds); IntervalSeconds the mean time between its reports, its check interval. Both
	// are 0 from a server that predates them.
	StateSince      float64 `json:"state_since"`
	IntervalSeconds float64 `json:"interval_seconds"`
	// Reports counts the line's checks since it began reporting (none more than the window
	// apart).
	Reports int `json:"reports"`
}

// Backend is the backend part of s.Server.
func (s Server) Backend() string {
	be, _, _ := strings.Cut(s.Server, "/")
	return be
}

// Agent is the last reply the agent-check listener gave one load balancer (known by its source
// address) for a (service, port); port 0 when the request named no port.
type Agent struct {
	Port       int     `json:"port"`
	Source     string  `json:"source"`
	Reply      string  `json:"reply"` // the line sent, without its "\n"
	LastSeen   float64 `json:"last_seen"`
	AgeSeconds float64 `json:"age_seconds"`
	// ReplySince is when the source's unbroken run of polls answered with this Reply began;
	// IntervalSeconds the mean time between its polls. Both are 0 from an older server.
	ReplySince      float64 `json:"reply_since"`
	IntervalSeconds float64 `json:"interval_seconds"`
	Reports         int     `json:"reports"` // polls answered since it began polling
}
