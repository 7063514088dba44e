package server

import (
	"net/http"
	"time"

	"github.com/hacheck/hacheck/check"
	"github.com/hacheck/hacheck/config"
	"github.com/hacheck/hacheck/lb"
	"github.com/hacheck/hacheck/spool"
)

// lbOptions are the tracker's limits: max_services bounds the (service, port) pairs and
// max_source_ips the load balancer lines of one pair, as they bound every other client-invented
// key.
func lbOptions(cfg config.Config) lb.Options {
	return lb.Options{Window: time.Duration(cfg.LBWindow), MaxKeys: int(cfg.MaxServices), MaxLines: int(cfg.MaxSourceIPs)}
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
