package server

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/hacheck/hacheck/check"
	"github.com/hacheck/hacheck/lb"
	"github.com/hacheck/hacheck/spool"
	"github.com/hacheck/hacheck/spool/audit"
)

// handleSpoolChange is POST /spool/<service>/<port>/status: the remote equivalent of
// hadown/haup, off unless allow_remote_spool_changes, and then only from the allowed networks
// and with the bearer token when one is configured.
func (s *Server) handleSpoolChange(w http.ResponseWriter, r *http.Request) {
	cfg := s.cfg.Load()
	source := remoteAddr(r)
	log := s.logger().With().Str("remote", r.RemoteAddr).Str("path", r.URL.Path).Logger()
	if !cfg.AllowRemoteSpoolChanges {
		http.Error(w, "remote spool changes are disabled (allow_remote_spool_changes)", http.StatusForbidden)
		return
	}
	if !addrIn(source, cfg.RemoteSpoolAllowedCIDRs) {
		log.Warn().Msg("remote spool change refused: source not in remote_spool_allowed_cidrs")
		http.Error(w, "source address not allowed to change the spool", http.StatusForbidden)
		return
	}
	if cfg.RemoteSpoolToken != "" {
		auth := r.Header.Get("Authorization")
		token, ok := strings.CutPrefix(auth, "Bearer ")
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="hacheck"`)
			http.Error(w, "a bearer token is required", http.StatusUnauthorized)
			return
		}
		if subtle.ConstantTimeCompare([]byte(token), []byte(cfg.RemoteSpoolToken)) != 1 {
			log.Warn().Msg("remote spool change refused: wrong token")
			http.Error(w, "wrong token", http.StatusForbidden)
			return
		}
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form: "+oneLine(err.Error()), http.StatusBadRequest)
		return
	}
	service := r.PathValue("service")
	port, err := check.ParsePort(r.PathValue("port"), false)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	// The fields come from the body or the query string, as the Python hacheck read them (the
	// body's first): a guard=1 or wait= in the query must not be dropped silently.
	form := r.Form
	opts, err := parseSpoolOptions(form)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var change func() (any, error)
	// What the change did, for the audit: the mark written, or whether one was removed.
	var (
		written *spool.Mark
		removed bool
	)
	switch status := form.Get("status"); status {
	case "up":
		change = func() (any, error) {
			var err error
			removed, err = s.store.Up(service, port)
			return map[string]any{"service": service, "port": port, "status": "up", "removed": removed}, err
		}
	case "down", "drain":
		drain := status == "drain" // a drain mark: checks answer 404, agents "drain"
		expiration, err1 := formTime(form.Get("expiration"))
		creation, err2 := formTime(form.Get("creation"))
		if err := errors.Join(err1, err2); err != nil {
			http.Error(w, oneLine(err.Error()), http.StatusBadRequest)
			return
		}
		m := spool.Mark{Service: service, Port: port, Reason: form.Get("reason"), Expiration: expiration, Creation: creation, Drain: drain}
		var check func(spool.Set) error
		if opts.guard {
			// Asked for: a client that does not ask keeps what it always got. Decided under
			// the spool's lock, so that no other change on this host slips in between, once
			// the load balancers that just began checking count or went quiet.
			if err := s.settleGuard(r.Context(), m); err != nil {
				log.Warn().Err(err).Msg("remote spool change refused by the disruption guard")
				http.Error(w, oneLine(fmt.Sprintf("refusing to mark %s down: %v; nothing written", m.Key(), err)), http.StatusConflict)
				return
			}
			check = func(held spool.Set) error { return s.guardChange(held, m) }
		}
		change = func() (any, error) {
			ms, err := s.store.PutAll([]spool.Mark{m}, check)
			if err != nil {
				return nil, err
			}
			written = &ms[0]
			return map[string]any{"service": service, "port": port, "status": status, "reason": written.Reason,
				"creation": written.Creation.Unix(), "expiration": unixOrNil(written.Expiration)}, nil
		}
	default:
		http.Error(w, fmt.Sprintf("status must be up, down or drain, got %q", status), http.StatusBadRequest)
		return
	}
	var result any
	err = s.ownChange(service, port, func() (err error) {
		result, err = change()
		return err
	})
	var refused *lb.GuardError
	if errors.As(err, &refused) {
		log.Warn().Err(err).Msg("remote spool change refused by the disruption guard")
		http.Error(w, oneLine(fmt.Sprintf("refusing to mark %s down: %v; nothing written", spool.Key{Service: service, Port: port}, err)), http.StatusConflict)
		return
	}
	if err != nil {
		code := http.StatusBadRequest
		var access *spool.AccessError
		if errors.As(err, &access) {
			code = http.StatusInternalServerError
		}
		log.Warn().Err(err).Msg("remote spool change failed")
		http.Error(w, oneLine(err.Error()), code)
		return
	}
	changedAt := time.Now()
	if written != nil || removed {
		// Who: the client's address, and whether it presented the configured token (every
		// request that got here did, when one is configured).
		tokenMatched := cfg.RemoteSpoolToken != ""
		ch := audit.Change{Action: audit.ActionUp, Service: service, Port: port, Remote: r.RemoteAddr, Token: &tokenMatched}
		if written != nil {
			ch.Action, ch.Reason, ch.Expiration = audit.ActionOf(*written), written.Reason, written.Expiration
		}
		ch.Guarded = opts.guard && written != nil
		s.auditHTTP(ch)
	}
	if opts.wait > 0 {
		// The change is made whatever the wait says: 200 once every load balancer reported
		// it, 504 (with what is pending) when the time ran out.
		target := lb.Up
		switch {
		case written != nil && written.Drain:
			target = lb.Drain
		case written != nil:
			target = lb.Down
		}
		wr := s.waitChange(r.Context(), service, port, target, changedAt, opts.wait)
		out, _ := result.(map[string]any)
		out["wait"] = wr
		code := http.StatusOK
		if !wr.Done {
			code = http.StatusGatewayTimeout
		}
		writeJSON(w, code, out)
		return
	}
	writeJSON(w, http.StatusOK, result)
}

func formTime(text string) (time.Time, error) {
	if text == "" || text == "null" {
		return time.Time{}, nil
	}
	return spool.ParseUnixTime(text)
}

func unixOrNil(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.Unix()
}

// addrIn ignores addr's zone: a link-local client arrives zoned (fe80::1%eth0), prefixes have
// no zones, and Prefix.Contains is false for every zoned address. An IPv4 client on an IPv6
// socket is matched as IPv4.
func addrIn(addr netip.Addr, prefixes []netip.Prefix) bool {
	addr = addr.Unmap().WithZone("")
	for _, p := range prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
