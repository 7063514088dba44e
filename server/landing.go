package server

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/hacheck/hacheck/lb"
	"github.com/hacheck/hacheck/spool"
)

// The landing page: what a person opening http://<host>:3333/ in a browser (or curl, or a text
// browser) wants to see of this host. Plain HTML from html/template, which escapes every value
// (a mark's reason, a service name, a load balancer's header fields are all someone else's
// text); no script, and a Content-Security-Policy that would refuse one anyway.

//go:embed landing.html
var landingHTML string

var landingTemplate = template.Must(template.New("landing").Funcs(template.FuncMap{
	"ago": func(now, t time.Time) string { return roundDuration(now.Sub(t)).String() + " ago" },
	"in":  func(now, t time.Time) string { return "in " + roundDuration(t.Sub(now)).String() },
	"utc": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
}).Parse(landingHTML))

// maxLandingRows bounds each of the page's tables; the JSON endpoints have the rest.
const maxLandingRows = 200

// recentWindow is how far back the page lists checked services, /recent's default threshold.
const recentWindow = 600 * time.Second

type landingPage struct {
	Version, SpoolRoot, SpoolError string
	Now                            time.Time
	Uptime                         time.Duration
	Marks                          []landingMark
	MoreMarks                      int
	Recent                         []landingRecent
	MoreRecent                     int
	RecentMinutes                  int
	LB                             []landingLB
	MoreLB                         int
	LBWindow                       time.Duration
}

type landingMark struct {
	Service, Port, Kind, Reason string
	Since, Until                time.Time
}

type landingRecent struct {
	Service, RemoteIP string
	Code              int
	Time              time.Time
}

// landingLB is one load balancer line of a service (an lb.Server), or one agent reply (Agent
// set: Node says "agent check" and State is the reply), as GET /lb/<service> has them.
type landingLB struct {
	Service string
	Line    lb.Server
	Agent   bool
}

// handleLanding is GET /: the version, this host's marks, the services checked recently with
// their last answer, what each load balancer reports, and links to the JSON and metrics.
func (s *Server) handleLanding(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	page := landingPage{Version: s.version, SpoolRoot: s.store.Root(), Now: now,
		Uptime: roundDuration(now.Sub(s.started)), RecentMinutes: int(recentWindow / time.Minute), LBWindow: s.lb.Window()}

	marks, err := s.store.List()
	if err != nil {
		page.SpoolError = err.Error()
	}
	for i, m := range marks {
		if i == maxLandingRows {
			page.MoreMarks = len(marks) - i
			break
		}
		page.Marks = append(page.Marks, landingMarkOf(m))
	}

	recent := s.metrics.Recent(now.Add(-recentWindow))
	for i, svc := range recent {
		if i == maxLandingRows {
			page.MoreRecent = len(recent) - i
			break
		}
		page.Recent = append(page.Recent, landingRecent{svc.Service, svc.RemoteIP, svc.Code, svc.Time})
	}

	// Every service a load balancer line reported within the window, by name, then its lines
	// as GET /lb/<service> sorts them, then its agent replies.
	var lbRows []landingLB
	for _, svc := range slices.Sorted(maps.Keys(s.lb.StateCounts(now))) {
		if len(lbRows) > maxLandingRows {
			break
		}
		snap := s.lb.Snapshot(svc, 0, now)
		for _, l := range snap.Servers {
			lbRows = append(lbRows, landingLB{Service: svc, Line: l})
		}
		for _, a := range snap.Agents {
			lbRows = append(lbRows, landingLB{Service: svc, Agent: true, Line: lb.Server{
				Port: a.Port, Node: "agent check", Source: a.Source, State: a.Reply, AgeSeconds: a.AgeSeconds}})
		}
	}
	if len(lbRows) > maxLandingRows {
		page.MoreLB = len(lbRows) - maxLandingRows
		lbRows = lbRows[:maxLandingRows]
	}
	page.LB = lbRows

	var buf bytes.Buffer
	if err := landingTemplate.Execute(&buf, page); err != nil {
		http.Error(w, "rendering the page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.Write(buf.Bytes())
}

// roundDuration is a duration to the second, never negative (a clock step or a mark written
// with a future creation).
func roundDuration(d time.Duration) time.Duration { return max(d, 0).Round(time.Second) }

// landingMarkOf is one row of the marks table.
func landingMarkOf(m spool.Mark) landingMark {
	row := landingMark{Service: m.Service, Port: "all ports", Kind: landingKind(m), Reason: m.Reason,
		Since: m.Creation, Until: m.Expiration}
	if m.Port != 0 {
		row.Port = fmt.Sprint(m.Port)
	}
	if m.Err != nil {
		row.Reason = "unreadable, counted as down: " + m.Err.Error()
	}
	return row
}

// landingKind is the mark's kind, with the percentage of a weight ("weight 30%"), as the
// commands print it.
func landingKind(m spool.Mark) string {
	if k := m.Kind(); k != spool.KindWeight {
		return string(k)
	}
	return fmt.Sprintf("%s %d%%", spool.KindWeight, *m.Weight)
}
