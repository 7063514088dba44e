package spool

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// AllServices is the name of the host-wide mark: it marks every service down.
const AllServices = "all"

// MaxNameLen is the longest valid service name, in bytes.
const MaxNameLen = 128

// Mark is one maintenance mark: a file <root>/<service> (Port 0) or <root>/<service>:<port>.
type Mark struct {
	Service string
	Port    int // 0: the whole service
	Reason  string
	// Creation is when the service went down ("down since"); for a plain-text mark from an old
	// tool, or JSON without "creation", it is the file's modification time.
	Creation time.Time
	// Expiration is when the mark stops counting; the zero Time means never.
	Expiration time.Time
	// Drain is set on a drain mark ("drain": true): the service should take no new sessions
	// but finish the ones it has. Readers that do not know the key see a down mark, the safe
	// side.
	Drain bool
	// Weight is the share of its normal load-balancer weight the service should get, in
	// percent (0–256, as HAProxy's agent check takes it); nil when the mark sets none.
	Weight *int
	// Err is set when the mark exists but cannot be read or parsed, or when the entry under
	// the mark's name is not a regular file. Such a mark counts as down (fail closed) and
	// Reason says why.
	Err error

	extra map[string]json.RawMessage // unknown JSON keys, kept when the mark is rewritten
}

// Name is the mark's file name within the spool root.
func (m Mark) Name() string { return FileName(m.Service, m.Port) }

// Expired reports whether the mark no longer counts at now. An unreadable mark never expires.
func (m Mark) Expired(now time.Time) bool {
	return m.Err == nil && !m.Expiration.IsZero() && !now.Before(m.Expiration)
}

// InvalidError is bad input refused before anything is touched: a name, a port, a time. The CLI
// exits 2 on it and the HTTP API answers 400.
type InvalidError struct{ msg string }

func (e *InvalidError) Error() string { return e.msg }

func invalidf(format string, args ...any) error { return &InvalidError{fmt.Sprintf(format, args...)} }

// ValidateName reports why a service name is not valid: 1–128 bytes of [A-Za-z0-9_.-], not
// starting with '.'. Such names are single path components, so they never leave the root.
func ValidateName(name string) error {
	if name == "" {
		return invalidf("invalid service name: empty")
	}
	if len(name) > MaxNameLen {
		return invalidf("invalid service name %.40q...: %d bytes, at most %d", name, len(name), MaxNameLen)
	}
	if name[0] == '.' {
		return invalidf("invalid service name %q: must not start with '.'", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return invalidf("invalid service name %q: only letters, digits, '_', '.' and '-' are allowed", name)
		}
	}
	return nil
}

// ValidatePort reports why a mark's port is not valid for service: 0 (whole service) or
// 1–65535, and only 0 for the host-wide mark "all", which has no instances.
func ValidatePort(service string, port int) error {
	if port < 0 || port > 65535 {
		return invalidf("invalid port %d: must be 0 (whole service) or 1-65535", port)
	}
	if service == AllServices && port != 0 {
		return invalidf("invalid port %d: the host-wide mark %q covers every port and takes none", port, AllServices)
	}
	return nil
}

// ParseFileName splits a spool file name into service and port. ok is false for names that are
// not marks (dotfiles, temp files, invalid names or ports).
func ParseFileName(name string) (service string, port int, ok bool) {
	service = name
	if i := strings.IndexByte(name, ':'); i >= 0 {
		service = name[:i]
		p, err := strconv.Atoi(name[i+1:])
		if err != nil || p < 1 || p > 65535 || strconv.Itoa(p) != name[i+1:] {
			return "", 0, false
		}
		port = p
	}
	if ValidateName(service) != nil || ValidatePort(service, port) != nil {
		return "", 0, false
	}
	return service, port, true
}

// MaxWeight is the largest weight a mark may carry, in percent: what HAProxy's agent check
// accepts.
const MaxWeight = 256

type markJSON struct {
	Reason     *string  `json:"reason"`
	Expiration *float64 `json:"expiration"`
	Creation   *float64 `json:"creation"`
	Drain      *bool    `json:"drain"`
	Weight     *float64 `json:"weight"`
}

// knownKeys are the JSON keys Mark has fields for; every other key is kept as it was.
var knownKeys = [...]string{"reason", "expiration", "creation", "drain", "weight"}

// ParseContent reads a mark file's content. A JSON object must have the documented types
// (reason: string, expiration: finite number or null, creation: finite number, drain: boolean,
// weight: whole number 0–256 or null); anything that is not a JSON object is an old tool's
// plain-text mark whose reason is the whole (trimmed) content. modTime stands in for a missing
// creation, and for one further after modTime than clocks drift apart. The returned error means
// "counts as down, but say why": the returned Mark is still usable, with Err set.
func ParseContent(data []byte, modTime time.Time) (Mark, error) {
	m := Mark{Creation: modTime}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || trimmed[0] != '{' || !json.Valid(trimmed) {
		// Reasons end up in HTTP bodies, JSON and metric labels, which all need valid UTF-8.
		m.Reason = strings.ToValidUTF8(string(trimmed), "\uFFFD")
		return m, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &fields); err != nil {
		return failClosed(m, fmt.Errorf("mark is not a JSON object: %w", err))
	}
	var known markJSON
	if err := json.Unmarshal(trimmed, &known); err != nil {
		return failClosed(m, fmt.Errorf("mark has a field of the wrong type: %w", err))
	}
	if known.Reason != nil {
		m.Reason = *known.Reason
	}
	if known.Expiration != nil {
		t, err := unixTime(*known.Expiration)
		if err != nil {
			return failClosed(m, fmt.Errorf("mark expiration: %w", err))
		}
		m.Expiration = t
	}
	if known.Creation != nil {
		t, err := unixTime(*known.Creation)
		if err != nil {
			return failClosed(m, fmt.Errorf("mark creation: %w", err))
		}
		// No honest writer puts a "down since" after the moment it writes the file. One
		// further ahead than clocks drift apart is not believed: the file's own time
		// stands in, so the mark ages (and max_mark_age flags it) like any other.
		if modTime.IsZero() || !t.After(modTime.Add(creationSkew)) {
			m.Creation = t
		}
	}
	if known.Drain != nil {
		m.Drain = *known.Drain
	}
	if known.Weight != nil {
		w := *known.Weight
		if w != math.Trunc(w) || w < 0 || w > MaxWeight {
			return failClosed(m, fmt.Errorf("mark weight %v is not a whole percentage from 0 to %d", w, MaxWeight))
		}
		weight := int(w)
		m.Weight = &weight
	}
	for _, k := range knownKeys {
		delete(fields, k)
	}
	if len(fields) > 0 {
		m.extra = fields
	}
	return m, nil
}

func failClosed(m Mark, err error) (Mark, error) {
	m.Err = err
	m.Reason = "unreadable mark, counted as down: " + err.Error()
	return m, err
}

// maxUnixSeconds keeps expirations within what time.Time and JSON round-trip exactly.
const maxUnixSeconds = 1 << 40

func unixTime(sec float64) (time.Time, error) {
	if math.IsNaN(sec) || math.IsInf(sec, 0) || sec < 0 || sec > maxUnixSeconds {
		return time.Time{}, invalidf("%v is not a finite unix time", sec)
	}
	whole, frac := math.Modf(sec)
	return time.Unix(int64(whole), int64(frac*1e9)), nil
}

// ParseUnixTime reads a unix time in seconds as clients send it in forms and flags: decimal,
// with or without a fraction ("1750000000", "1750000000.5417001", as Python's str(time.time())
// writes it). It must be a finite number above 0 and within the range marks can hold.
func ParseUnixTime(text string) (time.Time, error) {
	sec, err := strconv.ParseFloat(text, 64)
	if err != nil || sec <= 0 {
		return time.Time{}, invalidf("%.40q is not a unix time", text)
	}
	t, err := unixTime(sec)
	// A value above 0 but under a nanosecond rounds to the epoch itself, which is no time
	// after it.
	if err != nil || !t.After(time.Unix(0, 0)) {
		return time.Time{}, invalidf("%.40q is not a unix time", text)
	}
	return t, nil
}

// unixSeconds avoids UnixNano, which overflows after the year 2262.
func unixSeconds(t time.Time) float64 {
	return float64(t.Unix()) + float64(t.Nanosecond())/1e9
}

// MarshalContent is the JSON written for a mark, unknown keys from the file it replaces included.
// "drain" and "weight" are written only when set, so a plain down mark is what every older
// reader expects.
func (m Mark) MarshalContent() ([]byte, error) {
	if m.Weight != nil && (*m.Weight < 0 || *m.Weight > MaxWeight) {
		return nil, invalidf("weight %d%% is outside 0-%d%%", *m.Weight, MaxWeight)
	}
	out := make(map[string]any, len(m.extra)+len(knownKeys))
	for k, v := range m.extra {
		out[k] = v
	}
	out["reason"] = m.Reason
	if m.Expiration.IsZero() {
		out["expiration"] = nil
	} else {
		out["expiration"] = unixSeconds(m.Expiration)
	}
	out["creation"] = unixSeconds(m.Creation)
	if m.Drain {
		out["drain"] = true
	}
	if m.Weight != nil {
		out["weight"] = *m.Weight
	}
	return json.Marshal(out)
}
