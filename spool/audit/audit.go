// Package audit records every change of the spool as one structured log line: what changed
// (action, service, port, reason, expiration, weight), how (origin) and who did it, as far as
// the recording process can tell for sure.
package audit

import (
	"time"

	"github.com/rs/zerolog"

	"github.com/hacheck/hacheck/spool"
)

// Actions: what a change did to the mark of (service, port): wrote a mark of a kind (see
// spool.Kind), or removed it.
const (
	ActionDown   = string(spool.KindDown)   // a down mark was written
	ActionDrain  = string(spool.KindDrain)  // a drain mark was written
	ActionWeight = string(spool.KindWeight) // a mark carrying only a weight was written
	ActionUp     = "up"                     // the mark was removed
)

// Actions are every action, the only values the action of a change takes.
var Actions = []string{ActionDown, ActionDrain, ActionWeight, ActionUp}

// Origins: where the change came from.
const (
	OriginCLI   = "cli"   // hadown/haup/hacheck weight, logged by the command itself
	OriginHTTP  = "http"  // POST /spool/..., logged by the server
	OriginWatch = "watch" // a file changed by another writer (the CLI included), seen by the server
)

// Change is one spool change.
type Change struct {
	Action     string
	Service    string
	Port       int
	Reason     string
	Expiration time.Time // zero: never
	Weight     *int      // percent; nil when the mark sets none
	Origin     string

	// Who. The CLI knows its real uid and $SUDO_USER; the server knows an HTTP client's
	// address and whether it presented the configured token; for a change seen by the watch
	// only the file's owner is known (nothing at all for a removal).
	UID      *int
	SudoUser string
	Remote   string
	Token    *bool
	// Force: the disruption guard was skipped on purpose (hadown --force).
	Force bool
	// Guarded: the change asked for the disruption guard and passed it (POST guard=1).
	Guarded bool
}

// ActionOf is the action that writing m stands for: its kind.
func ActionOf(m spool.Mark) string { return string(m.Kind()) }

// Log writes c as one info line, "spool change".
func Log(l *zerolog.Logger, c Change) {
	ev := l.Info().Str("action", c.Action).Str("service", c.Service).Int("port", c.Port).
		Str("reason", c.Reason).Str("origin", c.Origin)
	if c.Expiration.IsZero() {
		ev = ev.Interface("expiration", nil)
	} else {
		ev = ev.Float64("expiration", float64(c.Expiration.UnixNano())/1e9)
	}
	if c.Weight != nil {
		ev = ev.Int("weight", *c.Weight)
	}
	if c.UID != nil {
		ev = ev.Int("uid", *c.UID)
	}
	if c.SudoUser != "" {
		ev = ev.Str("sudo_user", c.SudoUser)
	}
	if c.Remote != "" {
		ev = ev.Str("remote", c.Remote)
	}
	if c.Token != nil {
		ev = ev.Bool("token", *c.Token)
	}
	if c.Force {
		ev = ev.Bool("force", true)
	}
	if c.Guarded {
		ev = ev.Bool("guarded", true)
	}
	ev.Msg("spool change")
}
