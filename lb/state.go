// Package lb is what the load balancers see of this host: the X-Haproxy-Server-State header
// every HAProxy check carries (parsed, and kept per service and port for a short window), the
// agent-check grammar (what an agent asks and is told) and the replies it was given, the JSON
// types GET /lb/<service> serves and the CLI decodes, and the disruption guard both of them
// apply.
package lb

import (
	"errors"
	"strconv"
	"strings"
)

// Header is the header HAProxy's `http-check send-state` adds to every health check.
const Header = "X-Haproxy-Server-State"

// State is one X-Haproxy-Server-State header, parsed. HAProxy writes it as
//
//	UP 2/3; address=10.0.0.5; port=8080; name=be_app/app1; node=lb1; weight=1/2; scur=0/0; qcur=0
//
// with "; throttle=N%" during slowstart. The state word is what HAProxy holds before this
// check's result; the counters appear while a rise or fall is under way.
type State struct {
	Word     string // UP, DOWN, NOLB, "no check", or any other word HAProxy may send
	Counters string // "2/3" during a rise or fall, else ""
	Address  string
	Port     int // the server's traffic port; 0 when absent or not a port
	Backend  string
	Server   string
	Node     string // the HAProxy instance (its `node` setting, by default its host name)
	// Weight is this server's weight and TotalWeight the backend's total usable weight, as
	// HAProxy reports them; 0 when the field is absent or malformed.
	Weight, TotalWeight int
	Scur, BackendScur   int // current sessions of the server and of its backend
	Qcur                int // requests queued for the server
	Throttle            int // slowstart percentage; 0 when not throttled
}

// Errors ParseState returns; the header is then not recorded.
var (
	ErrNoState = errors.New("send-state header has no state word")
	ErrNoName  = errors.New("send-state header has no name=<backend>/<server>")
	ErrTooLong = errors.New("send-state header or one of its names is longer than HAProxy sends")
)

// Bounds of what a header may carry. HAProxy's header is about 100 bytes and its node, backend
// and server names are short identifiers: a header beyond these is not HAProxy's, and keeping
// it would let any client that may ask for a check spend the tracker's memory on it.
const (
	MaxHeaderBytes = 1024
	MaxNameBytes   = 128 // node, backend and server, each
)

// Words bound in State.Word so that a header cannot invent label values: anything else is
// kept in the JSON but counted as WordOther in metrics.
const (
	WordUp      = "UP"
	WordDown    = "DOWN"
	WordNOLB    = "NOLB"
	WordNoCheck = "no check"
	WordOther   = "other"
)

// maxWordLen bounds the state word; HAProxy's longest is "no check".
const maxWordLen = 16

// ParseState parses an X-Haproxy-Server-State value. It is lenient: unknown fields are
// ignored, field names match in any case, and a malformed number leaves its field at 0. It
// fails when the header cannot name what it describes (no state word, or no
// name=<backend>/<server>) or is longer than HAProxy's (MaxHeaderBytes, MaxNameBytes). The
// strings of State are parts of header. It allocates nothing: every check request with the header runs it.
func ParseState(header string) (State, error) {
	var st State
	if len(header) > MaxHeaderBytes {
		return State{}, ErrTooLong
	}
	end := strings.IndexByte(header, ';')
	if end < 0 {
		end = len(header)
	}
	first := trimBlanks(header[:end])
	if i := strings.LastIndexByte(first, ' '); i >= 0 {
		if _, _, ok := fraction(first[i+1:]); ok {
			st.Counters = first[i+1:]
			first = trimBlanks(first[:i])
		}
	}
	if first == "" || len(first) > maxWordLen || !isLetter(first[0]) || strings.IndexByte(first, '=') >= 0 {
		return State{}, ErrNoState
	}
	st.Word = first
	for rest := header[end:]; rest != ""; {
		rest = rest[1:] // the ';'
		field := rest
		if i := strings.IndexByte(rest, ';'); i >= 0 {
			field, rest = rest[:i], rest[i:]
		} else {
			rest = ""
		}
		eq := strings.IndexByte(field, '=')
		if eq < 0 {
			continue
		}
		value := trimBlanks(field[eq+1:])
		switch fieldName(trimBlanks(field[:eq])) {
		case "address":
			st.Address = value
		case "port":
			if p := number(value); p > 0 && p <= 65535 {
				st.Port = p
			}
		case "name":
			// Backend names cannot hold a '/', so the first one ends it.
			if i := strings.IndexByte(value, '/'); i > 0 && i < len(value)-1 {
				st.Backend, st.Server = value[:i], value[i+1:]
			}
		case "node":
			st.Node = value
		case "weight":
			st.Weight, st.TotalWeight, _ = fraction(value)
		case "scur":
			st.Scur, st.BackendScur, _ = fraction(value)
		case "qcur":
			st.Qcur = max(number(value), 0)
		case "throttle":
			st.Throttle = max(number(strings.TrimSuffix(value, "%")), 0)
		}
	}
	if st.Backend == "" {
		return State{}, ErrNoName
	}
	if len(st.Node) > MaxNameBytes || len(st.Backend) > MaxNameBytes || len(st.Server) > MaxNameBytes {
		return State{}, ErrTooLong
	}
	return st, nil
}

// fieldName is name in lower case; HAProxy sends lower case, so only another sender pays for
// the conversion.
func fieldName(name string) string {
	for i := 0; i < len(name); i++ {
		if c := name[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(name)
		}
	}
	return name
}

// trimBlanks drops the spaces and tabs HAProxy puts around fields.
func trimBlanks(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// WordLabel is the metric label for a state word: one of the words HAProxy sends, else
// WordOther.
func WordLabel(word string) string {
	switch word {
	case WordUp, WordDown, WordNOLB, WordNoCheck:
		return word
	}
	return WordOther
}

// fraction parses "a/b" of two non-negative decimal numbers; 0, 0, false otherwise.
func fraction(s string) (a, b int, ok bool) {
	i := strings.IndexByte(s, '/')
	if i < 0 {
		return 0, 0, false
	}
	a, b = number(s[:i]), number(s[i+1:])
	if a < 0 || b < 0 {
		return 0, 0, false
	}
	return a, b, true
}

// maxNumber keeps every figure far from overflow, in sums too; HAProxy's weights and session
// counts are far smaller.
const maxNumber = 1 << 40

// number parses a non-negative decimal number; -1 when s is not one.
func number(s string) int {
	if s == "" || len(s) > 13 || !allDigits(s) {
		return -1
	}
	n, err := strconv.Atoi(s)
	if err != nil || n > maxNumber {
		return -1
	}
	return n
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
