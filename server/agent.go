package server

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/hacheck/hacheck/lb"
	"github.com/hacheck/hacheck/server/listener"
	"github.com/hacheck/hacheck/spool"
)

// agentVerdict is the spool as the agent check sees it: the same effective state the check
// route's spool gate answers from (host-wide, then whole-service, then instance mark), and the
// weight of the mark found, down or not (a weight-only mark holds nothing down).
func (s *Server) agentVerdict(service string, port int, now time.Time) lb.Verdict {
	m, down := s.store.StatusAt(service, port, now)
	v := lb.Verdict{Down: down, Weight: -1}
	if m.Weight != nil {
		v.Weight = *m.Weight
	}
	if down {
		// An unreadable mark is a down mark, whatever drain key it may carry: maint.
		v.Drain, v.Reason = m.Kind() == spool.KindDrain, m.Reason
	}
	return v
}

// agentServer answers HAProxy's agent checks from this server's spool and records every reply
// for GET /lb. An agent check is a check request: only clients in check_allowed_cidrs get an
// answer.
func (s *Server) agentServer() *listener.AgentServer {
	return &listener.AgentServer{Answer: s.agentAnswer, MaxLineBytes: lb.MaxRequestBytes,
		Allow: func(a netip.Addr) bool { return addrIn(a, s.cfg.Load().CheckAllowedCIDRs) }}
}

// agentAnswer is the reply to one agent request; once sent, the load balancers' tracker keeps
// it as what that client fetched.
func (s *Server) agentAnswer(req listener.AgentRequest) (string, func()) {
	now := time.Now()
	service, port, reply, ok := lb.Answer(req.Line, s.agentVerdict, now)
	if !ok && (req.Complete || req.Overlong || req.Line != "") {
		s.logger().Debug().Str("remote", req.Source.String()).Str("request", req.Line[:min(len(req.Line), 64)]).
			Msg("agent request names no valid service; answering for the host-wide mark")
	}
	return reply, func() { s.lb.RecordAgent(service, port, req.Source, reply, now) }
}

// ListenAgent opens the agent-check listener on bind ("" = every address) and port: plain
// TCP, since HAProxy's agent check speaks no HTTP.
func ListenAgent(bind string, port int) (net.Listener, error) {
	addr := net.JoinHostPort(bind, strconv.Itoa(port))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s (agent_port): %w", addr, err)
	}
	return l, nil
}

// ServeAgent answers agent checks on l until ctx is cancelled; it returns once every
// connection it started is done. A failure of the listener is logged: the check route goes on.
func (s *Server) ServeAgent(ctx context.Context, l net.Listener) {
	if err := s.agentServer().Serve(ctx, l); err != nil {
		s.logger().Error().Err(err).Str("listen", l.Addr().String()).Msg("agent-check listener stopped; HAProxy's agent checks fail from now on")
	}
}
