package server

import (
	"net/http"
	"time"

	"github.com/hacheck/hacheck/check"
	"github.com/hacheck/hacheck/config"
	"github.com/hacheck/hacheck/lb"
	"github.com/hacheck/hacheck/spool"
)

// lbBytesPerService is the tracker's memory budget per max_services: 8 MiB at the default
// 2,000, room for some 10,000 load balancer lines; a host with more services (and so more
// lines) raises max_services anyway.
const lbBytesPerService = 4 << 10

// lbOptions are the tracker's settings: its window, its budget and who may report
// (lb_sources). Any address means no filter at all, the cheapest check on every request.
func (s *Server) lbOptions(cfg config.Config) lb.Options {
	opts := lb.Options{Window: time.Duration(cfg.LBWindow), MaxBytes: int(cfg.MaxServices) * lbBytesPerService,
		MinReports: s.lbTrust.MinReports, MinSpan: s.lbTrust.MinSpan}
	for _, p := range cfg.LBSources {
		if p.Bits() != 0 {
			opts.Sources = cfg.LBSources
			break
		}
	}
	return opts
}

// handleLB is GET /lb/<service>[?port=N]: what the load balancers reported of the service
// within the window. A service nobody checks has empty lists.
func (s *Server) handleLB(w http.ResponseWriter, r *http.Request) {
	service := r.PathValue("service")
	if err := spool.ValidateName(service); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	port := 0
	if text := r.URL.Query().Get("port"); text != "" {
		p, err := check.ParsePort(text, false)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		port = p
	}
	snap := s.lb.Snapshot(service, port, time.Now())
	snap.MinRemainingWeight = int(s.cfg.Load().MinRemainingWeight)
	writeJSON(w, http.StatusOK, snap)
}
