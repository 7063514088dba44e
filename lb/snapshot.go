package lb

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"
	"time"
)

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
	// UnconfirmedLastSeen is when the most recently seen of those reporters last reported
	// (unix seconds; 0 if none): a load balancer that just began checking (or began again
	// after hacheck restarted) reports again within its check interval, a one-off does not
	// (see Unsettled).
	UnconfirmedLastSeen float64 `json:"unconfirmed_last_seen"`
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
	// LastCode is what hacheck answered the line's last check (0: not known, an older server).
	LastCode int `json:"last_code"`
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

// Snapshot is what the established reporters said of service within the window before now:
// every port, or only port when port is not 0. The lists are empty, not nil, when nothing was
// seen; each holds at most 1,000 entries (Omitted counts the rest).
func (t *Tracker) Snapshot(service string, port int, now time.Time) Snapshot {
	window := t.Window()
	oldest := now.Add(-window)
	snap := Snapshot{Service: service, WindowSeconds: window.Seconds(), Now: unixSeconds(now),
		Servers: []Server{}, Agents: []Agent{}}
	t.mu.Lock()
	for _, e := range t.entries {
		if e.line.service != service || (port != 0 && e.line.port != port) || e.seen.Before(oldest) {
			continue
		}
		if !e.established {
			snap.Unconfirmed++
			snap.UnconfirmedLastSeen = max(snap.UnconfirmedLastSeen, unixSeconds(e.seen))
			continue
		}
		if e.line.agent {
			snap.Agents = append(snap.Agents, Agent{Port: e.line.port, Source: addrText(e.line.source), Reply: e.reply,
				LastSeen: unixSeconds(e.seen), AgeSeconds: now.Sub(e.seen).Seconds(),
				ReplySince: unixSeconds(e.since), IntervalSeconds: e.interval(), Reports: e.reports})
			continue
		}
		st := e.state
		snap.Servers = append(snap.Servers, Server{
			Port: e.line.port, Node: e.line.node, Server: e.line.backend + "/" + e.line.server, Source: addrText(e.line.source),
			State: st.Word, Counters: st.Counters, Weight: st.Weight, TotalWeight: st.TotalWeight,
			Scur: st.Scur, BackendScur: st.BackendScur,
			LastSeen: unixSeconds(e.seen), AgeSeconds: now.Sub(e.seen).Seconds(),
			StateSince: unixSeconds(e.since), IntervalSeconds: e.interval(), Reports: e.reports, LastCode: e.code,
		})
	}
	t.mu.Unlock()
	slices.SortFunc(snap.Servers, func(a, b Server) int {
		return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.Server, b.Server),
			cmp.Compare(a.Port, b.Port), cmp.Compare(a.Source, b.Source))
	})
	slices.SortFunc(snap.Agents, func(a, b Agent) int {
		return cmp.Or(cmp.Compare(a.Port, b.Port), cmp.Compare(a.Source, b.Source))
	})
	if n := len(snap.Servers); n > maxSnapshotEntries {
		snap.Omitted += n - maxSnapshotEntries
		snap.Servers = snap.Servers[:maxSnapshotEntries]
	}
	if n := len(snap.Agents); n > maxSnapshotEntries {
		snap.Omitted += n - maxSnapshotEntries
		snap.Agents = snap.Agents[:maxSnapshotEntries]
	}
	return snap
}

// StateCounts counts the established server lines seen within the window before now, per
// service and state label (WordLabel), every port together.
func (t *Tracker) StateCounts(now time.Time) map[string]map[string]int {
	oldest := now.Add(-t.Window())
	counts := map[string]map[string]int{}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, e := range t.entries {
		if e.line.agent || !e.established || e.seen.Before(oldest) {
			continue
		}
		byState := counts[e.line.service]
		if byState == nil {
			byState = map[string]int{}
			counts[e.line.service] = byState
		}
		byState[WordLabel(e.state.Word)]++
	}
	return counts
}

func addrText(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// unixSeconds avoids UnixNano, which overflows after the year 2262.
func unixSeconds(t time.Time) float64 {
	return float64(t.Unix()) + float64(t.Nanosecond())/1e9
}
