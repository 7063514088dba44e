package spool

import (
	"strconv"
	"strings"
)

// DownBody is the body of the answer to a check of service that m holds down:
//
//	Service <name> in down state[ since <creation>][ until <expiration>][: <reason>]
//
// byte for byte what the Python hacheck writes, because clients parse it: PaaSTA reads "since"
// to decide when a drained task is safe to kill, and takes a missing "since" as "at once".
// <name> is "all" when the host-wide mark holds the service down and service otherwise (a
// per-port mark included). Times are unix seconds with six decimals, "since" is left out only
// when the creation is unknown (the zero Time), "until" when the mark never expires, and the
// reason when it is empty. Line breaks in the reason become spaces: the body is read as one
// line, and a second line would make the whole of it unparsable.
func (m Mark) DownBody(service string) string { return m.stateBody(service, " in down state") }

// DrainBody is DownBody with the state word "drain" (Service <name> in drain state since ...):
// the answer a drain mark gives the checks that can say "drain" with a 404, in the shape
// clients already parse.
func (m Mark) DrainBody(service string) string { return m.stateBody(service, " in drain state") }

func (m Mark) stateBody(service, state string) string {
	name := service
	if m.Service == AllServices {
		name = AllServices
	}
	// The fixed text and two times of up to 17 characters fit in 80 bytes: one allocation.
	b := make([]byte, 0, 80+len(name)+len(m.Reason))
	b = append(b, "Service "...)
	b = append(b, name...)
	b = append(b, state...)
	if !m.Creation.IsZero() {
		b = append(b, " since "...)
		b = strconv.AppendFloat(b, unixSeconds(m.Creation), 'f', 6, 64)
	}
	if !m.Expiration.IsZero() {
		b = append(b, " until "...)
		b = strconv.AppendFloat(b, unixSeconds(m.Expiration), 'f', 6, 64)
	}
	if m.Reason != "" {
		b = append(b, ": "...)
		if strings.ContainsAny(m.Reason, "\r\n") {
			b = append(b, strings.Map(oneLineRune, m.Reason)...)
		} else {
			b = append(b, m.Reason...)
		}
	}
	return string(b)
}

func oneLineRune(r rune) rune {
	if r == '\r' || r == '\n' {
		return ' '
	}
	return r
}
