package lbwait

import "github.com/hacheck/hacheck/lb"

// The JSON of GET /lb/<service>, as the server writes it.
type (
	Snapshot = lb.Snapshot
	Server   = lb.Server
	Agent    = lb.Agent
)
