package server

import (
	"context"

	"github.com/hacheck/hacheck/spool"
	"github.com/hacheck/hacheck/spool/audit"
)

// auditWatch records a change of the spool made by another writer: the hadown/haup commands,
// an old tool, a configuration manager, someone with an editor. All the server can tell for
// sure about who made it is the new file's owner; the commands log their own line with the
// user.
func (s *Server) auditWatch(c spool.Change) {
	ch := audit.Change{Service: c.Service, Port: c.Port, Origin: audit.OriginWatch}
	if c.New == nil {
		ch.Action = audit.ActionUp
		ch.Reason = c.Old.Reason
	} else {
		ch.Action = audit.ActionOf(*c.New)
		ch.Reason, ch.Expiration = c.New.Reason, c.New.Expiration
		if c.Owner >= 0 {
			uid := c.Owner
			ch.UID = &uid
		}
	}
	// Counted before it is logged, so that whoever reads the line finds it counted too.
	s.metrics.SpoolChanged(ch.Action, ch.Origin)
	audit.Log(s.logger(), ch)
}

// auditHTTP records a change made through POST /spool/...
func (s *Server) auditHTTP(ch audit.Change) {
	ch.Origin = audit.OriginHTTP
	s.metrics.SpoolChanged(ch.Action, ch.Origin)
	audit.Log(s.logger(), ch)
}

// followChanges audits every change of the spool made outside this server until ctx ends.
// Without it the server still serves every change at once; only the audit misses them.
func (s *Server) followChanges(ctx context.Context, cw *spool.ChangeWatcher) {
	if err := cw.Run(ctx, s.auditWatch); err != nil && ctx.Err() == nil {
		s.logger().Error().Err(err).Msg("changes of the spool by other writers are no longer audited")
	}
}

// ownChange runs a change of the spool this server makes (and audits) itself, so the change
// watcher does not report it a second time.
func (s *Server) ownChange(service string, port int, fn func() error) error {
	return s.changes.Own(service, port, fn)
}
