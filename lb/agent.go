package lb

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hacheck/hacheck/spool"
)

// Verdict is what the spool says of one (service, port), as far as the agent check cares.
type Verdict struct {
	Down   bool   // a mark holds it out of rotation
	Drain  bool   // that mark is a drain mark: finish sessions, take no new ones
	Reason string // the mark's reason
	// Weight is the share of its configured weight the server should get, in percent (0–256),
	// from a mark that sets one; -1 when none does.
	Weight int
}

// Lookup is what the agent needs of the spool: the verdict for (service, port) at now. port is
// 0 when the request named none; service is spool.AllServices when it named nothing usable.
type Lookup func(service string, port int, now time.Time) Verdict

// maxReasonBytes bounds the reason in a maint reply: HAProxy shows it in its stats as the
// agent's last answer, where a short line is what an operator reads.
const maxReasonBytes = 200

// Reply is the agent-check answer for v, without its "\n", in HAProxy's agent grammar:
//
//   - "drain" for a drain mark (HAProxy: DRAIN, existing sessions finish);
//   - "maint # <reason>" for any other mark (HAProxy: MAINT, an operator's action rather
//     than a failed check), or "maint" when there is no reason;
//   - "ready NN%" otherwise, NN the mark's weight or 100. Only "ready" brings a server back
//     from MAINT or DRAIN, and a percentage is always sent because HAProxy keeps the last
//     weight an agent gave until the agent gives another: without it, removing a weight mark
//     would leave the server at the reduced weight.
func Reply(v Verdict) string {
	switch {
	case v.Down && v.Drain:
		return "drain"
	case v.Down:
		reason := oneLine(v.Reason, maxReasonBytes)
		if reason == "" {
			return "maint"
		}
		return "maint # " + reason
	}
	weight := v.Weight
	if weight < 0 || weight > spool.MaxWeight {
		weight = 100
	}
	return "ready " + strconv.Itoa(weight) + "%"
}

// oneLine makes s safe inside one agent reply: control characters (line breaks above all,
// which would end the reply early) become spaces, and it is cut to at most n bytes on a rune
// boundary.
func oneLine(s string, n int) string {
	s = strings.TrimSpace(strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD")))
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// MaxRequestBytes bounds what is read of an agent-send line: a service name (at most 128
// bytes), ':' and a port, with room for a "\r".
const MaxRequestBytes = spool.MaxNameLen + 8

// ParseRequest reads HAProxy's agent-send line, "<service>[:<port>]" with its line ending
// already removed. ok is false when it names no valid service and port.
func ParseRequest(line string) (service string, port int, ok bool) {
	line = strings.TrimSpace(line)
	service, portText, hasPort := strings.Cut(line, ":")
	if spool.ValidateName(service) != nil {
		return "", 0, false
	}
	if !hasPort {
		return service, 0, true
	}
	// Port 0 is the whole service, as everywhere else a port is named (an agent-send copied
	// from a check line's dummy port 0 asks for the service, not for nothing).
	p := number(portText)
	if p < 0 || p > 65535 || spool.ValidatePort(service, p) != nil {
		return "", 0, false
	}
	return service, p, true
}

// Answer is the agent's reply to an agent-send line (without its line end) from lookup at now,
// and what the line was taken to ask. When it names no valid service (and port), because
// nothing arrived, or garbage, or a name cut off, the answer is the host-wide mark's alone
// (spool.AllServices, port 0; ok false): the spool still decides, as far as the request lets
// it tell.
func Answer(line string, lookup Lookup, now time.Time) (service string, port int, reply string, ok bool) {
	service, port, ok = ParseRequest(line)
	if !ok {
		service, port = spool.AllServices, 0
	}
	return service, port, Reply(lookup(service, port, now)), ok
}
