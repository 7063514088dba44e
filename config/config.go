// Package config is hacheck's YAML configuration: the keys, their defaults, how a file is read
// (Load, Parse), the range checks (Validate), and how a Config is shown without its secrets.
//
// Adding a key is one field on Config with a yaml tag naming the key and a want tag saying, in
// the words of an error message, what the key accepts; its type is one of the value types in
// types.go, whose UnmarshalYAML decides what a value may look like. Its default goes in Default,
// its range check in Config.problems.
package config

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Config is hacheck's configuration. Start from Default: the zero value does not pass Validate.
// Each field's yaml tag is its key in the file; its want tag is what error messages say the key
// must be.
type Config struct {
	// Port is where the server listens when started without -p (sockets passed by systemd win
	// over both), and where the CLI's hadown, haup and halist ask it; default 3333.
	Port Int `yaml:"port" want:"must be a port number from 1 to 65535"`
	// CacheTime is how long a check result (success or failure) is reused; 0 disables the cache.
	// Seconds (int or float) or a Go duration string such as "500ms"; default 10.
	CacheTime Duration `yaml:"cache_time" want:"must be a number of seconds >= 0 or a duration like \"1.5s\""`
	// CheckTimeout bounds every upstream check: > 0 and <= MaxCheckTimeout; default 10.
	CheckTimeout Duration `yaml:"check_timeout" want:"must be a number of seconds > 0 and <= 300 or a duration like \"1.5s\""`
	// ServiceNameHeader, when not empty, is sent with the service name on http(s) checks.
	ServiceNameHeader Text `yaml:"service_name_header" want:"must be a valid HTTP header name or empty"`
	// HTTPHeadersToCopy are the request headers forwarded to http(s) checks; default [Host].
	HTTPHeadersToCopy HeaderNames `yaml:"http_headers_to_copy" want:"must be a list of HTTP header names"`
	// LogPath is "stdout", "stderr" (default) or a file path.
	LogPath Text `yaml:"log_path" want:"must be \"stdout\", \"stderr\" or a file path"`
	// MySQLUsername and MySQLPassword log in for mysql checks; both are kept out of String and
	// every error.
	MySQLUsername Secret `yaml:"mysql_username" want:"must be a string"`
	MySQLPassword Secret `yaml:"mysql_password" want:"must be a string"`
	// PostgresUsername and PostgresPassword log in for postgres checks, to PostgresDatabase
	// (default "postgres"); the username and password are kept out of String and every error.
	PostgresUsername Secret `yaml:"postgres_username" want:"must be a string"`
	PostgresPassword Secret `yaml:"postgres_password" want:"must be a string"`
	PostgresDatabase Text   `yaml:"postgres_database" want:"must be a database name of 1-63 bytes"`
	// RlimitNofile is the open-files limit to set at startup; see Rlimit.
	RlimitNofile Rlimit `yaml:"rlimit_nofile" want:"must be \"max\" or a positive integer"`
	// MemoryLimit is the soft limit on the server's memory; see MemoryLimit. Default 40 MiB.
	MemoryLimit MemoryLimit `yaml:"memory_limit" want:"must be \"off\", 0, or at least 16MiB: bytes, or a number with B, KiB, MiB, GiB or TiB"`
	// CheckAllowedCIDRs may make check requests (GET /<protocol>/...); others get 403. Default
	// any client (0.0.0.0/0, ::/0): a check answers with a local endpoint's status and up to
	// 4 KiB of its body, so narrow this to the load balancers' networks where that matters.
	CheckAllowedCIDRs Prefixes `yaml:"check_allowed_cidrs" want:"must be a list of CIDRs or IP addresses"`
	// AllowRemoteSpoolChanges enables POST /spool/...; default false.
	AllowRemoteSpoolChanges Bool `yaml:"allow_remote_spool_changes" want:"must be true or false"`
	// RemoteSpoolAllowedCIDRs may POST spool changes; default loopback (127.0.0.0/8, ::1/128).
	RemoteSpoolAllowedCIDRs Prefixes `yaml:"remote_spool_allowed_cidrs" want:"must be a list of CIDRs or IP addresses"`
	// RemoteSpoolToken, when not empty, is the bearer token spool POSTs must carry.
	RemoteSpoolToken Secret `yaml:"remote_spool_token" want:"must be a string"`
	// MaxSourceIPs and MaxServices cap the label values taken from clients (1..1_000_000);
	// defaults 1000 and 2000.
	MaxSourceIPs Int `yaml:"max_source_ips" want:"must be an integer from 1 to 1000000"`
	MaxServices  Int `yaml:"max_services" want:"must be an integer from 1 to 1000000"`
	// SourceNetworks names client networks for metrics: name -> prefixes.
	SourceNetworks Networks `yaml:"source_networks" want:"must be a mapping of network names to lists of CIDRs"`
	// AgentPort is the HAProxy agent-check listener's port; 0 (default) means off.
	AgentPort Int `yaml:"agent_port" want:"must be a port number from 0 to 65535 (0: off)"`
	// LBWindow is how long what a load balancer reported (its send-state header, the agent's
	// reply to it) is kept and shown at GET /lb: a few check intervals; default 30 s.
	LBWindow Duration `yaml:"lb_window" want:"must be a number of seconds > 0 and <= 3600 or a duration like \"30s\""`
	// LBSources may report load-balancer state (send-state headers on check requests, agent
	// polls) that --wait and the disruption guard read; default any address. Others still get
	// their answers; what they report is not kept.
	LBSources Prefixes `yaml:"lb_sources" want:"must be a list of CIDRs or IP addresses"`
	// MinRemainingWeight is the least usable weight a backend may keep when hadown (or a POST
	// asking for the guard) takes this host's server out; default 0: only the last usable
	// server is protected.
	MinRemainingWeight Int `yaml:"min_remaining_weight" want:"must be an integer from 0 to 1000000"`
	// MaxMarkAge flags, in /status, a mark without an expiration that is older than this: a
	// maintenance someone forgot to end. 0 (default) flags none.
	MaxMarkAge Duration `yaml:"max_mark_age" want:"must be a number of seconds >= 0 or a duration like \"12h\" (0: off)"`
}

const (
	// DefaultPort is the server's port when neither -p nor the config file names one.
	DefaultPort = 3333
	// MaxCheckTimeout is the largest check_timeout; the server's write timeout is derived from
	// it, so a check still running after a reload can always answer.
	MaxCheckTimeout = 300 * time.Second

	defaultCacheTime    = 10 * time.Second
	defaultCheckTimeout = 10 * time.Second
	defaultLBWindow     = 30 * time.Second
	// defaultMemoryLimit keeps the server's peak RSS near 50 MiB under any flood measured
	// (docs/performance.md); its live data is a few MiB.
	defaultMemoryLimit = 40 << 20
	// defaultPostgresDatabase exists on every PostgreSQL server: initdb creates it.
	defaultPostgresDatabase = "postgres"
	// maxPostgresNameLen is PostgreSQL's identifier length (NAMEDATALEN-1); the server cuts
	// a longer database name, so the check would log in somewhere else than configured.
	maxPostgresNameLen = 63
	maxLBWindow        = time.Hour
	maxLabelValues     = 1_000_000
	maxNetworkNameLen  = 128
	// maxConfigBytes keeps `-c /dev/zero` or a runaway generated file from eating memory.
	maxConfigBytes = 4 << 20
	// otherNetwork is the label overflowing sources fold into, so no source network may take it.
	otherNetwork = "other"
	redactedText = "<redacted>"
)

// Default is the configuration used without a config file; every call returns fresh slices.
func Default() Config {
	return Config{
		Port:              DefaultPort,
		CacheTime:         Duration(defaultCacheTime),
		CheckTimeout:      Duration(defaultCheckTimeout),
		HTTPHeadersToCopy: HeaderNames{"Host"},
		LogPath:           "stderr",
		PostgresDatabase:  defaultPostgresDatabase,
		CheckAllowedCIDRs: Prefixes{
			netip.MustParsePrefix("0.0.0.0/0"),
			netip.MustParsePrefix("::/0"),
		},
		RemoteSpoolAllowedCIDRs: Prefixes{
			netip.MustParsePrefix("127.0.0.0/8"),
			netip.MustParsePrefix("::1/128"),
		},
		MemoryLimit:  defaultMemoryLimit,
		MaxSourceIPs: 1000,
		MaxServices:  2000,
		LBWindow:     Duration(defaultLBWindow),
		LBSources: Prefixes{
			netip.MustParsePrefix("0.0.0.0/0"),
			netip.MustParsePrefix("::/0"),
		},
	}
}

// aliases are the Python hacheck's names for keys that mean the same here: the value is read
// as the key's own, so an old config keeps its setting. Setting both names is an error, since
// either choice of winner would surprise someone.
var aliases = map[string]string{"healthcheck_timeout": "check_timeout"}

// ignoredKeys are the Python hacheck's keys that have no meaning here, with the warning's
// reason: an old config still loads, and its reader learns the setting does nothing.
var ignoredKeys = map[string]string{
	"max_clients": "checks are not capped by a client count (concurrent requests for one check share it)",
}

// field is one config key: Config's field at index, named by its yaml tag.
type field struct {
	key, want string
	index     int
}

// fields are Config's keys in declaration order, read from the struct tags once.
var fields, fieldByKey = configFields()

func configFields() ([]field, map[string]field) {
	t := reflect.TypeFor[Config]()
	var list []field
	byKey := map[string]field{}
	for i := range t.NumField() {
		f := t.Field(i)
		key := f.Tag.Get("yaml")
		if key == "" || key == "-" {
			continue
		}
		fd := field{key: key, want: f.Tag.Get("want"), index: i}
		list = append(list, fd)
		byKey[key] = fd
	}
	return list, byKey
}

// Validate reports, in one line, every field that is out of range, naming each by its key.
func (c Config) Validate() error {
	if ps := c.problems(); len(ps) > 0 {
		return joinProblems(ps)
	}
	return nil
}

// problems are the range checks, one or more per key; ParseConfig runs them too, so a file
// and a Config built in code are judged alike.
func (c Config) problems() []problem {
	var ps []problem
	bad := func(key, got string) {
		ps = append(ps, problem{top: key, key: key, msg: fieldByKey[key].want + ", got " + got})
	}
	item := func(top string, i int, msg string) {
		ps = append(ps, problem{top: top, key: fmt.Sprintf("%s[%d]", top, i), msg: msg})
	}
	if c.Port < 1 || c.Port > 65535 {
		bad("port", strconv.Itoa(int(c.Port)))
	}
	if c.CacheTime < 0 {
		bad("cache_time", fmtSeconds(c.CacheTime))
	}
	if c.CheckTimeout <= 0 || time.Duration(c.CheckTimeout) > MaxCheckTimeout {
		bad("check_timeout", fmtSeconds(c.CheckTimeout))
	}
	if c.ServiceNameHeader != "" && !isHTTPHeaderToken(string(c.ServiceNameHeader)) {
		bad("service_name_header", quoteCut(string(c.ServiceNameHeader)))
	}
	seen := map[string]bool{}
	for i, h := range c.HTTPHeadersToCopy {
		switch canon := strings.ToLower(h); {
		case !isHTTPHeaderToken(h):
			item("http_headers_to_copy", i, wantHeader+", got "+quoteCut(h))
		case seen[canon]:
			item("http_headers_to_copy", i, quoteCut(h)+" is listed twice")
		default:
			seen[canon] = true
		}
	}
	if c.LogPath == "" || strings.ContainsRune(string(c.LogPath), 0) {
		bad("log_path", quoteCut(string(c.LogPath)))
	}
	if db := string(c.PostgresDatabase); db == "" || len(db) > maxPostgresNameLen || strings.ContainsRune(db, 0) {
		bad("postgres_database", quoteCut(db))
	}
	if _, err := c.RlimitNofile.limit(); err != nil {
		bad("rlimit_nofile", quoteCut(string(c.RlimitNofile)))
	}
	if c.MemoryLimit != 0 && c.MemoryLimit < minMemoryLimit {
		bad("memory_limit", c.MemoryLimit.String())
	}
	if len(c.CheckAllowedCIDRs) == 0 {
		// Nobody could be checked: every service would go down at the load balancers.
		ps = append(ps, problem{top: "check_allowed_cidrs", key: "check_allowed_cidrs", msg: "must list at least one CIDR (0.0.0.0/0 and ::/0: any client)"})
	}
	for i, p := range c.CheckAllowedCIDRs {
		if !p.IsValid() {
			item("check_allowed_cidrs", i, wantCIDR+", got an invalid prefix")
		}
	}
	for i, p := range c.RemoteSpoolAllowedCIDRs {
		if !p.IsValid() {
			item("remote_spool_allowed_cidrs", i, wantCIDR+", got an invalid prefix")
		}
	}
	if c.MaxSourceIPs < 1 || c.MaxSourceIPs > maxLabelValues {
		bad("max_source_ips", strconv.Itoa(int(c.MaxSourceIPs)))
	}
	if c.MaxServices < 1 || c.MaxServices > maxLabelValues {
		bad("max_services", strconv.Itoa(int(c.MaxServices)))
	}
	ps = append(ps, c.SourceNetworks.problems()...)
	if c.AgentPort < 0 || c.AgentPort > 65535 {
		bad("agent_port", strconv.Itoa(int(c.AgentPort)))
	}
	if c.LBWindow <= 0 || time.Duration(c.LBWindow) > maxLBWindow {
		bad("lb_window", fmtSeconds(c.LBWindow))
	}
	if len(c.LBSources) == 0 {
		// Nobody could report: --wait would never wait and the guard never refuse.
		ps = append(ps, problem{top: "lb_sources", key: "lb_sources", msg: "must list at least one CIDR (0.0.0.0/0 and ::/0: any address)"})
	}
	for i, p := range c.LBSources {
		if !p.IsValid() {
			item("lb_sources", i, wantCIDR+", got an invalid prefix")
		}
	}
	if c.MinRemainingWeight < 0 || c.MinRemainingWeight > maxLabelValues {
		bad("min_remaining_weight", strconv.Itoa(int(c.MinRemainingWeight)))
	}
	if c.MaxMarkAge < 0 {
		bad("max_mark_age", fmtSeconds(c.MaxMarkAge))
	}
	return ps
}

// problems also refuses one prefix under two names: which name a source got would depend on
// map order.
func (nw Networks) problems() []problem {
	const top = "source_networks"
	var ps []problem
	names := make([]string, 0, len(nw))
	for name := range nw {
		names = append(names, name)
	}
	sort.Strings(names)
	owner := map[netip.Prefix]string{}
	for _, name := range names {
		if msg := networkNameProblem(name); msg != "" {
			ps = append(ps, problem{top: top, key: top, msg: msg})
			continue
		}
		key := top + "." + name
		if len(nw[name]) == 0 {
			ps = append(ps, problem{top: top, key: key, msg: "must list at least one CIDR"})
		}
		for i, p := range nw[name] {
			switch prev, taken := owner[p]; {
			case !p.IsValid():
				ps = append(ps, problem{top: top, key: fmt.Sprintf("%s[%d]", key, i), msg: wantCIDR + ", got an invalid prefix"})
			case taken && prev != name:
				ps = append(ps, problem{top: top, key: key, msg: fmt.Sprintf("%s is also listed under %q", p, prev)})
			default:
				owner[p] = name
			}
		}
	}
	return ps
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

// remoteChangesUnguarded reports the one combination worth a warning: anyone in a
// non-loopback network may mark services down, with no token asked.
func (c Config) remoteChangesUnguarded() bool {
	if !c.AllowRemoteSpoolChanges || c.RemoteSpoolToken != "" {
		return false
	}
	for _, p := range c.RemoteSpoolAllowedCIDRs {
		if !p.Addr().IsLoopback() || (p.Addr().Is4() && p.Bits() < 8) {
			return true
		}
	}
	return false
}

// Redacted returns a copy with every Secret that is set replaced by "<redacted>"; slices and the
// map are shared with c.
func (c Config) Redacted() Config {
	v := reflect.ValueOf(&c).Elem()
	for _, f := range fields {
		if s, ok := v.Field(f.index).Addr().Interface().(*Secret); ok && *s != "" {
			*s = redactedText
		}
	}
	return c
}

// MarshalJSON writes the redacted config as one object keyed by the config keys, in Config's
// order, durations in seconds: logging a Config (zerolog's Interface, json.Marshal) never shows
// a secret, and the output is itself a valid config (JSON is YAML).
func (c Config) MarshalJSON() ([]byte, error) {
	v := reflect.ValueOf(c.Redacted())
	var b strings.Builder
	b.WriteByte('{')
	for i, f := range fields {
		value, err := json.Marshal(v.Field(f.index).Interface())
		if err != nil {
			return nil, fmt.Errorf("config key %s: %w", f.key, err)
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Quote(f.key))
		b.WriteByte(':')
		b.Write(value)
	}
	b.WriteByte('}')
	return []byte(b.String()), nil
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
func (c Config) GoString() string { return "config.Config" + c.String() }

func fmtSeconds(d Duration) string {
	return strconv.FormatFloat(time.Duration(d).Seconds(), 'f', -1, 64)
}
