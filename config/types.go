package config

import (
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// The value types below are what Config's fields are made of. Each one's UnmarshalYAML accepts
// what a config file may say for such a key and, for anything else, returns valueErrors, which
// Parse turns into "line N: config key <key>: <want>, got <what was there>". UnmarshalYAML is
// only called for a value that is not null: a null key keeps its default.

// Requirements of list items and nested values, which the key's own want tag does not cover.
const (
	wantHeader   = "must be a valid HTTP header name"
	wantCIDR     = "must be a CIDR like 10.0.0.0/8 or an IP address"
	wantCIDRList = "must be a list of CIDRs or IP addresses"
)

// Duration is a number of seconds (int or float; a quoted number too, as Python's float()
// accepted) or a Go duration string such as "1m30s".
type Duration time.Duration

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return wrong(n, false)
	}
	var secs float64
	switch n.ShortTag() {
	case "!!int", "!!float":
		if n.Decode(&secs) != nil {
			return wrong(n, false)
		}
	case "!!str":
		if dur, err := time.ParseDuration(n.Value); err == nil {
			*d = Duration(dur)
			return nil
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(n.Value), 64)
		if err != nil {
			return wrong(n, false)
		}
		secs = f
	default:
		return wrong(n, false)
	}
	if math.IsNaN(secs) || math.Abs(secs) > float64(math.MaxInt64)/float64(time.Second) {
		return wrong(n, false)
	}
	*d = Duration(math.Round(secs * float64(time.Second)))
	return nil
}

// MarshalJSON writes seconds, the form a config file uses.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).Seconds()) }

// Text is a string, or a number taken as written: the Python hacheck ran str() on its string
// keys, so an unquoted number worked there and keeps working here.
type Text string

func (t *Text) UnmarshalYAML(n *yaml.Node) error {
	s, ok := scalarText(n)
	if !ok {
		return wrong(n, false)
	}
	*t = Text(s)
	return nil
}

// Secret is Text that is never shown: not in String, JSON, %v, nor in an error about a wrong
// value (which names only the kind of value that was there).
type Secret string

func (s *Secret) UnmarshalYAML(n *yaml.Node) error {
	text, ok := scalarText(n)
	if !ok {
		return wrong(n, true)
	}
	*s = Secret(text)
	return nil
}

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redactedText
}

func (s Secret) GoString() string { return strconv.Quote(s.String()) }

func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// Bool is true or false; the unquoted YAML 1.1 words yes/no/on/off are read as PyYAML read
// them, since configs written for the Python hacheck say `allow_remote_spool_changes: yes`.
type Bool bool

var yaml11Bools = map[string]bool{
	"yes": true, "Yes": true, "YES": true, "on": true, "On": true, "ON": true,
	"no": false, "No": false, "NO": false, "off": false, "Off": false, "OFF": false,
}

func (b *Bool) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		switch tag := n.ShortTag(); {
		case tag == "!!bool":
			var v bool
			if n.Decode(&v) == nil {
				*b = Bool(v)
				return nil
			}
		case tag == "!!str" && n.Style == 0:
			if v, ok := yaml11Bools[n.Value]; ok {
				*b = Bool(v)
				return nil
			}
		}
	}
	return wrong(n, false)
}

// Int is a YAML integer (not a float, not a quoted number) within int32; Validate judges the
// key's own range.
type Int int

func (i *Int) UnmarshalYAML(n *yaml.Node) error {
	var v int64
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&v) != nil || v < math.MinInt32 || v > math.MaxInt32 {
		return wrong(n, false)
	}
	*i = Int(v)
	return nil
}

// HeaderNames is a list of HTTP header names, or one name as a list of one.
type HeaderNames []string

func (h *HeaderNames) UnmarshalYAML(n *yaml.Node) error {
	items, ok := listItems(n)
	if !ok {
		return wrong(n, false)
	}
	out := make(HeaderNames, 0, len(items))
	var errs valueErrors
	for i, it := range items {
		s, ok := scalarText(it)
		if !ok {
			errs = append(errs, wrongItem(it, fmt.Sprintf("[%d]", i), wantHeader))
			continue
		}
		out = append(out, s)
	}
	*h = out
	return errs.orNil()
}

// MarshalJSON writes an empty list, not null, for none: null in a config means the default.
func (h HeaderNames) MarshalJSON() ([]byte, error) {
	if h == nil {
		return []byte("[]"), nil
	}
	return json.Marshal([]string(h))
}

// Prefixes is a list of CIDRs or bare addresses (a /32 or /128), or one as a list of one.
// Prefixes are masked (10.1.2.3/8 means 10.0.0.0/8, as net.ParseCIDR has it); zoned addresses
// are refused, they never match a client address.
type Prefixes []netip.Prefix

func (p *Prefixes) UnmarshalYAML(n *yaml.Node) error {
	out, errs := decodePrefixes(n, "")
	*p = out
	return errs.orNil()
}

// decodePrefixes reads a list of prefixes; path is where the list is under the key being
// decoded ("" for the key itself).
func decodePrefixes(n *yaml.Node, path string) (Prefixes, valueErrors) {
	items, ok := listItems(n)
	if !ok {
		if path == "" {
			return nil, valueErrors{wrong(n, false)[0]}
		}
		return nil, valueErrors{wrongItem(n, path, wantCIDRList)}
	}
	out := make(Prefixes, 0, len(items))
	var errs valueErrors
	for i, it := range items {
		s, ok := scalarText(it)
		var p netip.Prefix
		var err error
		if ok {
			p, err = parsePrefixOrAddr(s)
		}
		if !ok || err != nil {
			errs = append(errs, wrongItem(it, fmt.Sprintf("%s[%d]", path, i), wantCIDR))
			continue
		}
		out = append(out, p)
	}
	return out, errs
}

func parsePrefixOrAddr(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("invalid CIDR %q", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// MarshalJSON writes an empty list, not null, for none: null in a config means the default.
func (p Prefixes) MarshalJSON() ([]byte, error) {
	if p == nil {
		return []byte("[]"), nil
	}
	return json.Marshal([]netip.Prefix(p))
}

// Networks maps network names to their prefixes (each a Prefixes value). `{}` means none, the
// same as the default.
type Networks map[string][]netip.Prefix

func (nw *Networks) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return wrong(n, false)
	}
	out := Networks{}
	var errs valueErrors
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			errs = append(errs, wrongItem(k, "", "network names must be strings"))
			continue
		}
		name := k.Value
		if msg := networkNameProblem(name); msg != "" {
			errs = append(errs, fail(k, "", msg))
			continue
		}
		if _, dup := out[name]; dup {
			errs = append(errs, fail(k, "", fmt.Sprintf("network %q is defined twice", name)))
			continue
		}
		if isNull(v) {
			errs = append(errs, fail(v, "."+name, "must list at least one CIDR"))
			continue
		}
		ps, perrs := decodePrefixes(v, "."+name)
		out[name] = ps
		errs = append(errs, perrs...)
	}
	if len(out) == 0 {
		out = nil
	}
	*nw = out
	return errs.orNil()
}

// MarshalJSON writes an empty mapping, not null, for none.
func (nw Networks) MarshalJSON() ([]byte, error) {
	if nw == nil {
		return []byte("{}"), nil
	}
	return json.Marshal(map[string][]netip.Prefix(nw))
}

// valueError is one problem UnmarshalYAML found in the value of the key being decoded.
type valueError struct {
	line int
	path string // under the key: "" for the key itself, "[2]", ".lb", ".lb[1]"
	msg  string // "" for a value of the wrong type or shape: the key's want tag, then ", got "+got
	got  string
}

type valueErrors []valueError

func (e valueErrors) Error() string {
	parts := make([]string, len(e))
	for i, v := range e {
		parts[i] = v.path + ": " + v.msg + v.got
	}
	return strings.Join(parts, "; ")
}

func (e valueErrors) orNil() error {
	if len(e) == 0 {
		return nil
	}
	return e
}

// wrong is the key's value as a whole of the wrong type or shape.
func wrong(n *yaml.Node, secret bool) valueErrors {
	return valueErrors{{line: n.Line, got: describeNode(n, secret)}}
}

// wrongItem is an item of the wrong type or shape, at path under the key.
func wrongItem(n *yaml.Node, path, want string) valueError {
	return valueError{line: n.Line, path: path, msg: want + ", got " + describeNode(n, false)}
}

func fail(n *yaml.Node, path, msg string) valueError {
	return valueError{line: n.Line, path: path, msg: msg}
}
