package server

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// Config is hacheck's configuration (SPEC section 4). Start from DefaultConfig: the zero value
// does not pass Validate.
type Config struct {
	// CacheTime is how long a check result (success or failure) is reused; 0 disables the cache.
	// YAML cache_time: seconds (int or float) or a Go duration string such as "500ms"; default 10.
	CacheTime time.Duration
	// CheckTimeout bounds every upstream check: > 0 and <= 300 s. YAML check_timeout, default 10.
	CheckTimeout time.Duration
	// ServiceNameHeader, when not empty, is sent with the service name on http(s) checks.
	ServiceNameHeader string
	// HTTPHeadersToCopy are the request headers forwarded to http(s) checks; default [Host].
	HTTPHeadersToCopy []string
	// LogPath is "stdout", "stderr" (default) or a file path.
	LogPath string
	// MySQLUsername and MySQLPassword log in for mysql checks; both are kept out of String and
	// every error.
	MySQLUsername, MySQLPassword string
	// RlimitNofile is "" (leave the limit alone), "max" (the hard limit) or a positive decimal
	// integer; see ApplyRlimitNofile.
	RlimitNofile string
	// AllowRemoteSpoolChanges enables POST /spool/...; default false.
	AllowRemoteSpoolChanges bool
	// RemoteSpoolAllowedCIDRs may POST spool changes; default loopback (127.0.0.0/8, ::1/128).
	// Prefixes are masked (10.1.2.3/8 becomes 10.0.0.0/8); a bare address is a /32 or /128.
	RemoteSpoolAllowedCIDRs []netip.Prefix
	// RemoteSpoolToken, when not empty, is the bearer token spool POSTs must carry.
	RemoteSpoolToken string
	// MaxSourceIPs and MaxServices cap the label values taken from clients (1..1_000_000);
	// defaults 1000 and 2000.
	MaxSourceIPs, MaxServices int
	// SourceNetworks names client networks for metrics: name -> prefixes (masked, as above).
	SourceNetworks map[string][]netip.Prefix
	// AgentPort is the HAProxy agent-check listener's port; 0 (default) means off.
	AgentPort int
}

const (
	defaultCacheTime    = 10 * time.Second
	defaultCheckTimeout = 10 * time.Second
	maxCheckTimeout     = 300 * time.Second
	maxLabelValues      = 1_000_000
	maxNetworkNameLen   = 128
	// maxConfigBytes keeps `-c /dev/zero` or a runaway generated file from eating memory.
	maxConfigBytes = 4 << 20
	// otherNetwork is the label overflowing sources fold into, so no source network may take it.
	otherNetwork = "other"
	redactedText = "<redacted>"
)

// DefaultConfig is the configuration used without a config file; every call returns fresh slices.
func DefaultConfig() Config {
	return Config{
		CacheTime:         defaultCacheTime,
		CheckTimeout:      defaultCheckTimeout,
		HTTPHeadersToCopy: []string{"Host"},
		LogPath:           "stderr",
		RemoteSpoolAllowedCIDRs: []netip.Prefix{
			netip.MustParsePrefix("127.0.0.0/8"),
			netip.MustParsePrefix("::1/128"),
		},
		MaxSourceIPs: 1000,
		MaxServices:  2000,
	}
}

// LoadConfig reads and parses the YAML file at path; path "" means DefaultConfig. Errors and
// warnings are one line each and start with the path.
func LoadConfig(path string) (Config, []string, error) {
	if path == "" {
		return DefaultConfig(), nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return Config{}, nil, fmt.Errorf("cannot read config file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return Config{}, nil, fmt.Errorf("cannot read config file: %w", err)
	}
	cfg, warnings, err := ParseConfig(data)
	for i, w := range warnings {
		warnings[i] = path + ": " + w
	}
	if err != nil {
		return Config{}, warnings, fmt.Errorf("%s: %w", path, err)
	}
	if st, serr := f.Stat(); serr == nil && st.Mode().Perm()&0o004 != 0 && (cfg.MySQLPassword != "" || cfg.RemoteSpoolToken != "") {
		warnings = append(warnings, path+": holds a password or token but every user may read it (chmod o-r)")
	}
	return cfg, warnings, nil
}

// ParseConfig parses one YAML document of config keys over DefaultConfig; empty data (or only
// comments) gives the defaults. Unknown keys are warnings, not errors. The error, if any, is
// one line naming every bad key; the returned Config is then the zero value.
func ParseConfig(data []byte) (Config, []string, error) {
	if len(data) > maxConfigBytes {
		return Config{}, nil, fmt.Errorf("config is larger than %d MiB", maxConfigBytes>>20)
	}
	root, err := parseSingleDocument(data)
	if err != nil {
		return Config{}, nil, err
	}
	cfg := DefaultConfig()
	d := &configDecoder{lines: map[string]int{}}
	if root != nil {
		d.decode(root, &cfg)
	}
	for _, p := range cfg.problems() {
		if p.line == 0 {
			p.line = d.lines[p.top]
		}
		d.problems = append(d.problems, p)
	}
	if len(d.problems) > 0 {
		slices.SortStableFunc(d.problems, func(a, b configProblem) int { return cmp.Compare(a.line, b.line) })
		return Config{}, d.warnings, joinConfigProblems(d.problems)
	}
	if cfg.AllowRemoteSpoolChanges && cfg.RemoteSpoolToken == "" && !allLoopbackPrefixes(cfg.RemoteSpoolAllowedCIDRs) {
		d.warnings = append(d.warnings, "allow_remote_spool_changes: any host in remote_spool_allowed_cidrs may mark services down without a token (set remote_spool_token)")
	}
	if cfg.AgentPort != 0 {
		// TODO: drop this once the HAProxy agent-check listener exists; nothing listens yet.
		d.warnings = append(d.warnings, fmt.Sprintf("line %d: agent_port is not implemented yet and is ignored", d.lines["agent_port"]))
	}
	return cfg, d.warnings, nil
}

// parseSingleDocument returns the top-level node of data's only YAML document, or nil when there
// is no document or it is null.
func parseSingleDocument(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, errors.New(singleLine(err.Error()))
	}
	var second yaml.Node
	switch err := dec.Decode(&second); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, errors.New(singleLine(err.Error()))
	default:
		return nil, fmt.Errorf("line %d: config holds more than one YAML document (a second starts here); put every key in one", second.Line)
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	root := yamlResolve(doc.Content[0])
	switch {
	case root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null":
		return nil, nil
	case root.Kind != yaml.MappingNode:
		return nil, fmt.Errorf("line %d: config must be a mapping of keys to values, got %s", root.Line, describeNode(root, false))
	}
	return root, nil
}

// configProblem is one bad key; ParseConfig reports all of them at once.
type configProblem struct {
	line int    // 0: unknown (a Config built in code)
	top  string // the top-level key, to find the line of a value-range problem
	key  string // as shown: cache_time, remote_spool_allowed_cidrs[2], source_networks.lb; "" for the file's shape
	msg  string
}

func (p configProblem) String() string {
	s := p.msg
	if p.key != "" {
		s = "config key " + p.key + ": " + s
	}
	if p.line > 0 {
		s = "line " + strconv.Itoa(p.line) + ": " + s
	}
	return s
}

func joinConfigProblems(ps []configProblem) error {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.String()
	}
	return errors.New(singleLine(strings.Join(parts, "; ")))
}

// Each key's requirement, shared by the decoder (wrong type) and Validate (wrong value) so a key
// is described the same way whichever step rejects it.
const (
	wantCacheTime    = `must be a number of seconds >= 0 or a duration like "1.5s"`
	wantCheckTimeout = `must be a number of seconds > 0 and <= 300 or a duration like "1.5s"`
	wantHeader       = "must be a valid HTTP header name"
	wantHeaderList   = "must be a list of HTTP header names"
	wantLogPath      = `must be "stdout", "stderr" or a file path`
	wantString       = "must be a string"
	wantRlimit       = `must be "max" or a positive integer`
	wantBool         = "must be true or false"
	wantCIDRList     = "must be a list of CIDRs or IP addresses"
	wantCIDR         = "must be a CIDR like 10.0.0.0/8 or an IP address"
	wantLabelCap     = "must be an integer from 1 to 1000000"
	wantNetworks     = "must be a mapping of network names to lists of CIDRs"
	wantPort         = "must be a port number from 0 to 65535 (0: off)"
)

// configField decodes one top-level key's (non-null, alias-resolved) value into cfg.
type configField func(d *configDecoder, key string, n *yaml.Node, cfg *Config)

var configFields = map[string]configField{
	"cache_time": func(d *configDecoder, k string, n *yaml.Node, c *Config) {
		d.duration(k, n, wantCacheTime, &c.CacheTime)
	},
	"check_timeout": func(d *configDecoder, k string, n *yaml.Node, c *Config) {
		d.duration(k, n, wantCheckTimeout, &c.CheckTimeout)
	},
	"service_name_header": func(d *configDecoder, k string, n *yaml.Node, c *Config) {
		d.str(k, n, wantHeader+" or empty", false, &c.ServiceNameHeader)
	},
	"http_headers_to_copy": func(d *configDecoder, k string, n *yaml.Node, c *Config) {
		c.HTTPHeadersToCopy = d.strList(k, n, wantHeaderList, wantHeader)
	},
	"log_path": func(d *configDecoder, k string, n *yaml.Node, c *Config) { d.str(k, n, wantLogPath, false, &c.LogPath) },
	"mysql_username": func(d *configDecoder, k string, n *yaml.Node, c *Config) {
		d.str(k, n, wantString, true, &c.MySQLUsername)
	},
	"mysql_password": func(d *configDecoder, k string, n *yaml.Node, c *Config) {
		d.str(k, n, wantString, true, &c.MySQLPassword)
	},
	"rlimit_nofile": (*configDecoder).rlimit,
	"allow_remote_spool_changes": func(d *configDecoder, k string, n *yaml.Node, c *Config) {
		d.boolean(k, n, &c.AllowRemoteSpoolChanges)
	},
	"remote_spool_allowed_cidrs": func(d *configDecoder, k string, n *yaml.Node, c *Config) {
		c.RemoteSpoolAllowedCIDRs = d.prefixes(k, n)
	},
	"remote_spool_token": func(d *configDecoder, k string, n *yaml.Node, c *Config) {
		d.str(k, n, wantString, true, &c.RemoteSpoolToken)
	},
	"max_source_ips": func(d *configDecoder, k string, n *yaml.Node, c *Config) {
		d.integer(k, n, wantLabelCap, &c.MaxSourceIPs)
	},
	"max_services": func(d *configDecoder, k string, n *yaml.Node, c *Config) {
		d.integer(k, n, wantLabelCap, &c.MaxServices)
	},
	"source_networks": (*configDecoder).networks,
	"agent_port":      func(d *configDecoder, k string, n *yaml.Node, c *Config) { d.integer(k, n, wantPort, &c.AgentPort) },
}

type configDecoder struct {
	problems []configProblem
	warnings []string
	lines    map[string]int // top-level key -> its line, for problems Validate finds later
	top      string         // the top-level key being decoded
}

func (d *configDecoder) fail(n *yaml.Node, key, msg string) {
	d.problems = append(d.problems, configProblem{line: n.Line, top: d.top, key: key, msg: msg})
}

// wrong records a value of the wrong type or shape: "<want>, got <what was there>".
func (d *configDecoder) wrong(n *yaml.Node, key, want string, secret bool) {
	d.fail(n, key, want+", got "+describeNode(n, secret))
}

func (d *configDecoder) decode(root *yaml.Node, cfg *Config) {
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := yamlResolve(root.Content[i]), yamlResolve(root.Content[i+1])
		switch {
		case k.Kind != yaml.ScalarNode:
			d.problems = append(d.problems, configProblem{line: k.Line, msg: "config keys must be plain names, got " + describeNode(k, false)})
			continue
		case k.ShortTag() == "!!merge":
			d.problems = append(d.problems, configProblem{line: k.Line, msg: "YAML merge keys (<<) are not supported in the config; write the keys out"})
			continue
		}
		name := k.Value
		set, known := configFields[name]
		if !known {
			w := fmt.Sprintf("line %d: unknown key %s ignored", k.Line, quoteCut(name))
			if s := suggestKey(name); s != "" {
				w += fmt.Sprintf(" (did you mean %q?)", s)
			}
			d.warnings = append(d.warnings, w)
			continue
		}
		if first, dup := d.lines[name]; dup {
			d.problems = append(d.problems, configProblem{line: k.Line, key: name, msg: fmt.Sprintf("set twice (first on line %d)", first)})
			continue
		}
		d.lines[name] = k.Line
		if yamlIsNull(v) {
			continue // "not set": the default stays, as the example config's `null`s promise
		}
		d.top = name
		set(d, name, v, cfg)
	}
}

func (d *configDecoder) duration(key string, n *yaml.Node, want string, out *time.Duration) {
	if n.Kind != yaml.ScalarNode {
		d.wrong(n, key, want, false)
		return
	}
	var secs float64
	switch n.ShortTag() {
	case "!!int", "!!float":
		if n.Decode(&secs) != nil {
			d.wrong(n, key, want, false)
			return
		}
	case "!!str":
		if dur, err := time.ParseDuration(n.Value); err == nil {
			*out = dur
			return
		}
		// A quoted number of seconds ("10") is what Python's float() accepted.
		f, err := strconv.ParseFloat(strings.TrimSpace(n.Value), 64)
		if err != nil {
			d.wrong(n, key, want, false)
			return
		}
		secs = f
	default:
		d.wrong(n, key, want, false)
		return
	}
	if math.IsNaN(secs) || math.Abs(secs) > float64(math.MaxInt64)/float64(time.Second) {
		d.wrong(n, key, want, false)
		return
	}
	*out = time.Duration(math.Round(secs * float64(time.Second)))
}

// str accepts a string, or a number taken as written: the Python hacheck ran str() on these keys,
// so an unquoted numeric password worked there and keeps working here.
func (d *configDecoder) str(key string, n *yaml.Node, want string, secret bool, out *string) {
	if s, ok := yamlScalarText(n); ok {
		*out = s
		return
	}
	d.wrong(n, key, want, secret)
}

func yamlScalarText(n *yaml.Node) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		return "", false
	}
	switch n.ShortTag() {
	case "!!str", "!!int", "!!float":
		return n.Value, true
	}
	return "", false
}

// strList accepts a list of strings, or one string as a list of one.
func (d *configDecoder) strList(key string, n *yaml.Node, wantList, wantItem string) []string {
	items, ok := yamlListItems(n)
	if !ok {
		d.wrong(n, key, wantList, false)
		return nil
	}
	out := make([]string, 0, len(items))
	for i, it := range items {
		s, ok := yamlScalarText(it)
		if !ok {
			d.wrong(it, fmt.Sprintf("%s[%d]", key, i), wantItem, false)
			continue
		}
		out = append(out, s)
	}
	return out
}

// yamlListItems returns a sequence's items, or a lone scalar as a list of one; false for a mapping.
func yamlListItems(n *yaml.Node) ([]*yaml.Node, bool) {
	switch n.Kind {
	case yaml.SequenceNode:
		items := make([]*yaml.Node, len(n.Content))
		for i, it := range n.Content {
			items[i] = yamlResolve(it)
		}
		return items, true
	case yaml.ScalarNode:
		return []*yaml.Node{n}, true
	}
	return nil, false
}

func (d *configDecoder) rlimit(key string, n *yaml.Node, cfg *Config) {
	s, ok := yamlScalarText(n)
	if !ok {
		d.wrong(n, key, wantRlimit, false)
		return
	}
	if strings.EqualFold(s, "max") {
		s = "max"
	}
	cfg.RlimitNofile = s // Validate judges the number
}

// yaml11Bools are the words PyYAML reads as booleans; configs written for the Python hacheck may
// say `allow_remote_spool_changes: yes`, which yaml.v3 would otherwise read as a string.
var yaml11Bools = map[string]bool{
	"yes": true, "Yes": true, "YES": true, "on": true, "On": true, "ON": true,
	"no": false, "No": false, "NO": false, "off": false, "Off": false, "OFF": false,
}

func (d *configDecoder) boolean(key string, n *yaml.Node, out *bool) {
	if n.Kind == yaml.ScalarNode {
		switch tag := n.ShortTag(); {
		case tag == "!!bool":
			if n.Decode(out) == nil {
				return
			}
		case tag == "!!str" && n.Style == 0:
			if b, ok := yaml11Bools[n.Value]; ok {
				*out = b
				return
			}
		}
	}
	d.wrong(n, key, wantBool, false)
}

func (d *configDecoder) integer(key string, n *yaml.Node, want string, out *int) {
	var v int64
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&v) != nil || v < math.MinInt32 || v > math.MaxInt32 {
		d.wrong(n, key, want, false)
		return
	}
	*out = int(v) // Validate judges the range
}

func (d *configDecoder) prefixes(key string, n *yaml.Node) []netip.Prefix {
	items, ok := yamlListItems(n)
	if !ok {
		d.wrong(n, key, wantCIDRList, false)
		return nil
	}
	out := make([]netip.Prefix, 0, len(items))
	for i, it := range items {
		s, ok := yamlScalarText(it)
		var p netip.Prefix
		var err error
		if ok {
			p, err = parsePrefixOrAddr(s)
		}
		if !ok || err != nil {
			d.wrong(it, fmt.Sprintf("%s[%d]", key, i), wantCIDR, false)
			continue
		}
		out = append(out, p)
	}
	return out
}

// parsePrefixOrAddr reads a CIDR or a bare address (a /32 or /128), masked so 10.1.2.3/8 means
// 10.0.0.0/8 as net.ParseCIDR would; zones are refused, they never match a client address.
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

func (d *configDecoder) networks(key string, n *yaml.Node, cfg *Config) {
	if n.Kind != yaml.MappingNode {
		d.wrong(n, key, wantNetworks, false)
		return
	}
	out := map[string][]netip.Prefix{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := yamlResolve(n.Content[i]), yamlResolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			d.wrong(k, key, "network names must be strings", false)
			continue
		}
		name := k.Value
		if msg := networkNameProblem(name); msg != "" {
			d.fail(k, key, msg)
			continue
		}
		if _, dup := out[name]; dup {
			d.fail(k, key, fmt.Sprintf("network %q is defined twice", name))
			continue
		}
		sub := key + "." + name
		if yamlIsNull(v) {
			d.fail(v, sub, "must list at least one CIDR")
			continue
		}
		out[name] = d.prefixes(sub, v)
	}
	if len(out) == 0 {
		out = nil // `{}` means none, the same as the default
	}
	cfg.SourceNetworks = out
}

func networkNameProblem(name string) string {
	switch {
	case name == otherNetwork:
		return fmt.Sprintf("network name %q is reserved for sources beyond max_source_ips", otherNetwork)
	case name == "" || len(name) > maxNetworkNameLen || strings.IndexFunc(name, func(r rune) bool { return !isNetworkNameChar(r) }) >= 0:
		return fmt.Sprintf("network name %s must be 1-%d characters of [A-Za-z0-9_.-]", quoteCut(name), maxNetworkNameLen)
	}
	if _, err := netip.ParseAddr(name); err == nil {
		return fmt.Sprintf("network name %q must not be an IP address (sources outside every network are counted by address)", name)
	}
	return ""
}

func isNetworkNameChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-'
}

// Validate reports, in one line, every field that is out of range, naming each by its YAML key.
func (c Config) Validate() error {
	if ps := c.problems(); len(ps) > 0 {
		return joinConfigProblems(ps)
	}
	return nil
}

func (c Config) problems() []configProblem {
	var ps []configProblem
	bad := func(key, msg string) { ps = append(ps, configProblem{top: key, key: key, msg: msg}) }
	if c.CacheTime < 0 {
		bad("cache_time", wantCacheTime+", got "+fmtSeconds(c.CacheTime))
	}
	if c.CheckTimeout <= 0 || c.CheckTimeout > maxCheckTimeout {
		bad("check_timeout", wantCheckTimeout+", got "+fmtSeconds(c.CheckTimeout))
	}
	if c.ServiceNameHeader != "" && !isHTTPHeaderToken(c.ServiceNameHeader) {
		bad("service_name_header", wantHeader+" or empty, got "+quoteCut(c.ServiceNameHeader))
	}
	seen := map[string]bool{}
	for i, h := range c.HTTPHeadersToCopy {
		key := fmt.Sprintf("http_headers_to_copy[%d]", i)
		switch canon := strings.ToLower(h); {
		case !isHTTPHeaderToken(h):
			ps = append(ps, configProblem{top: "http_headers_to_copy", key: key, msg: wantHeader + ", got " + quoteCut(h)})
		case seen[canon]:
			ps = append(ps, configProblem{top: "http_headers_to_copy", key: key, msg: quoteCut(h) + " is listed twice"})
		default:
			seen[canon] = true
		}
	}
	if c.LogPath == "" || strings.ContainsRune(c.LogPath, 0) {
		bad("log_path", wantLogPath+", got "+quoteCut(c.LogPath))
	}
	if _, err := parseRlimitSetting(c.RlimitNofile); err != nil {
		bad("rlimit_nofile", wantRlimit+", got "+quoteCut(c.RlimitNofile))
	}
	for i, p := range c.RemoteSpoolAllowedCIDRs {
		if !p.IsValid() {
			ps = append(ps, configProblem{top: "remote_spool_allowed_cidrs", key: fmt.Sprintf("remote_spool_allowed_cidrs[%d]", i), msg: wantCIDR + ", got an invalid prefix"})
		}
	}
	if c.MaxSourceIPs < 1 || c.MaxSourceIPs > maxLabelValues {
		bad("max_source_ips", wantLabelCap+", got "+strconv.Itoa(c.MaxSourceIPs))
	}
	if c.MaxServices < 1 || c.MaxServices > maxLabelValues {
		bad("max_services", wantLabelCap+", got "+strconv.Itoa(c.MaxServices))
	}
	ps = append(ps, c.networkProblems()...)
	if c.AgentPort < 0 || c.AgentPort > 65535 {
		bad("agent_port", wantPort+", got "+strconv.Itoa(c.AgentPort))
	}
	return ps
}

// networkProblems also refuses one prefix under two names: which name a source got would
// depend on map order.
func (c Config) networkProblems() []configProblem {
	const top = "source_networks"
	var ps []configProblem
	names := make([]string, 0, len(c.SourceNetworks))
	for name := range c.SourceNetworks {
		names = append(names, name)
	}
	sort.Strings(names)
	owner := map[netip.Prefix]string{}
	for _, name := range names {
		if msg := networkNameProblem(name); msg != "" {
			ps = append(ps, configProblem{top: top, key: top, msg: msg})
			continue
		}
		key := top + "." + name
		if len(c.SourceNetworks[name]) == 0 {
			ps = append(ps, configProblem{top: top, key: key, msg: "must list at least one CIDR"})
		}
		for i, p := range c.SourceNetworks[name] {
			switch prev, taken := owner[p]; {
			case !p.IsValid():
				ps = append(ps, configProblem{top: top, key: fmt.Sprintf("%s[%d]", key, i), msg: wantCIDR + ", got an invalid prefix"})
			case taken && prev != name:
				ps = append(ps, configProblem{top: top, key: key, msg: fmt.Sprintf("%s is also listed under %q", p, prev)})
			default:
				owner[p] = name
			}
		}
	}
	return ps
}

// parseRlimitSetting returns the limit rlimit_nofile asks for: 0 for "" (leave it), math.MaxUint64 for
// "max", else the number.
func parseRlimitSetting(s string) (uint64, error) {
	switch s {
	case "":
		return 0, nil
	case "max":
		return math.MaxUint64, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("rlimit_nofile %s, got %s", wantRlimit, quoteCut(s))
	}
	return n, nil
}

// isHTTPHeaderToken reports whether s is an RFC 9110 token, the only thing net/http sends as a
// header name.
func isHTTPHeaderToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// Redacted returns a copy with the MySQL credentials and the spool token replaced by
// "<redacted>" where they are set; slices and the map are shared with c.
func (c Config) Redacted() Config {
	for _, s := range []*string{&c.MySQLUsername, &c.MySQLPassword, &c.RemoteSpoolToken} {
		if *s != "" {
			*s = redactedText
		}
	}
	return c
}

// configJSON is Config as the YAML keys name it, durations in seconds: String's output is itself
// a valid config (JSON is YAML).
type configJSON struct {
	CacheTime               float64             `json:"cache_time"`
	CheckTimeout            float64             `json:"check_timeout"`
	ServiceNameHeader       string              `json:"service_name_header"`
	HTTPHeadersToCopy       []string            `json:"http_headers_to_copy"`
	LogPath                 string              `json:"log_path"`
	MySQLUsername           string              `json:"mysql_username"`
	MySQLPassword           string              `json:"mysql_password"`
	RlimitNofile            string              `json:"rlimit_nofile"`
	AllowRemoteSpoolChanges bool                `json:"allow_remote_spool_changes"`
	RemoteSpoolAllowedCIDRs []string            `json:"remote_spool_allowed_cidrs"`
	RemoteSpoolToken        string              `json:"remote_spool_token"`
	MaxSourceIPs            int                 `json:"max_source_ips"`
	MaxServices             int                 `json:"max_services"`
	SourceNetworks          map[string][]string `json:"source_networks"`
	AgentPort               int                 `json:"agent_port"`
}

// MarshalJSON writes the redacted config under its YAML key names, so logging a Config (zerolog's
// Interface, json.Marshal) never shows a secret.
func (c Config) MarshalJSON() ([]byte, error) {
	r := c.Redacted()
	j := configJSON{
		CacheTime:               r.CacheTime.Seconds(),
		CheckTimeout:            r.CheckTimeout.Seconds(),
		ServiceNameHeader:       r.ServiceNameHeader,
		HTTPHeadersToCopy:       stringsOrEmpty(r.HTTPHeadersToCopy),
		LogPath:                 r.LogPath,
		MySQLUsername:           r.MySQLUsername,
		MySQLPassword:           r.MySQLPassword,
		RlimitNofile:            r.RlimitNofile,
		AllowRemoteSpoolChanges: r.AllowRemoteSpoolChanges,
		RemoteSpoolAllowedCIDRs: prefixesToStrings(r.RemoteSpoolAllowedCIDRs),
		RemoteSpoolToken:        r.RemoteSpoolToken,
		MaxSourceIPs:            r.MaxSourceIPs,
		MaxServices:             r.MaxServices,
		SourceNetworks:          map[string][]string{},
		AgentPort:               r.AgentPort,
	}
	for name, ps := range r.SourceNetworks {
		j.SourceNetworks[name] = prefixesToStrings(ps)
	}
	return json.Marshal(j)
}

// String is the redacted config as one line of JSON.
func (c Config) String() string {
	b, err := c.MarshalJSON()
	if err != nil {
		return "<config: " + err.Error() + ">"
	}
	// Undo json's HTML escaping: this is read by people, and "\u003credacted\u003e" is noise.
	return strings.NewReplacer(`\u003c`, "<", `\u003e`, ">", `\u0026`, "&").Replace(string(b))
}

// GoString keeps %#v, which would otherwise print every field, from showing secrets.
func (c Config) GoString() string { return "server.Config" + c.String() }

func prefixesToStrings(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

func stringsOrEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func allLoopbackPrefixes(ps []netip.Prefix) bool {
	for _, p := range ps {
		if !p.Addr().IsLoopback() || (p.Addr().Is4() && p.Bits() < 8) {
			return false
		}
	}
	return true
}

// yamlResolve follows YAML aliases (*name) to the anchored node; the loop is bounded because a
// crafted document can make an alias point into itself.
func yamlResolve(n *yaml.Node) *yaml.Node {
	for i := 0; i < 8 && n.Kind == yaml.AliasNode && n.Alias != nil; i++ {
		n = n.Alias
	}
	return n
}

func yamlIsNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describeNode says what a wrong value was, for "got ..."; a secret's value is never echoed, only
// its kind.
func describeNode(n *yaml.Node, secret bool) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
	default:
		return "nothing"
	}
	tag := n.ShortTag()
	if secret {
		switch tag {
		case "!!int", "!!float":
			return "a number"
		case "!!bool":
			return "a boolean"
		case "!!null":
			return "null"
		}
		return "a string"
	}
	switch tag {
	case "!!int", "!!float", "!!bool", "!!null":
		if utf8.ValidString(n.Value) && !strings.ContainsFunc(n.Value, func(r rune) bool { return r < ' ' || r == 0x7f }) && len(n.Value) <= 40 {
			return n.Value
		}
	}
	return quoteCut(n.Value)
}

// quoteCut is %q cut to a length that keeps an error on one readable line.
func quoteCut(s string) string {
	const maxRunes = 64
	if utf8.RuneCountInString(s) > maxRunes {
		r := []rune(s)
		return strconv.Quote(string(r[:maxRunes])) + "..."
	}
	return strconv.Quote(s)
}

func fmtSeconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
}

// singleLine joins a multi-line message (yaml.v3's type errors are several lines) into one.
func singleLine(s string) string {
	lines := strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' })
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return strings.Join(lines, " ")
}

// suggestKey returns the known key closest to an unknown one, if it is plausibly a typo.
func suggestKey(name string) string {
	best, bestDist := "", 3
	keys := make([]string, 0, len(configFields))
	for k := range configFields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if d := keyEditDistance(strings.ToLower(name), k); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

func keyEditDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return math.MaxInt
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
