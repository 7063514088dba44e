package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func mustPrefixes(t testing.TB, ss ...string) []netip.Prefix {
	t.Helper()
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func assertConfig(t *testing.T, got, want Config) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		// %#v would redact the secrets we may be comparing, so show each field.
		gv, wv := reflect.ValueOf(got), reflect.ValueOf(want)
		for i := range gv.NumField() {
			if !reflect.DeepEqual(gv.Field(i).Interface(), wv.Field(i).Interface()) {
				t.Errorf("%s = %v, want %v", gv.Type().Field(i).Name, gv.Field(i).Interface(), wv.Field(i).Interface())
			}
		}
	}
}

func TestParseConfigDefaults(t *testing.T) {
	for _, in := range []string{"", "\n", "# only a comment\n", "---\n", "~\n", "--- null\n", "{}\n"} {
		cfg, warnings, err := Parse([]byte(in))
		if err != nil || len(warnings) != 0 {
			t.Errorf("Parse(%q) = warnings %q, err %v; want the defaults", in, warnings, err)
			continue
		}
		assertConfig(t, cfg, Default())
	}
	if err := Default().Validate(); err != nil {
		t.Errorf("Default().Validate() = %v", err)
	}
}

func TestDefaultConfigSharesNothing(t *testing.T) {
	a := Default()
	a.HTTPHeadersToCopy[0] = "X-Changed"
	a.RemoteSpoolAllowedCIDRs[0] = netip.MustParsePrefix("10.0.0.0/8")
	b := Default()
	if b.HTTPHeadersToCopy[0] != "Host" || b.RemoteSpoolAllowedCIDRs[0].String() != "127.0.0.0/8" {
		t.Errorf("changing one Default changed the next: %v", b)
	}
}

func TestLoadConfigFixtures(t *testing.T) {
	full := Config{
		CacheTime:               Duration(2500 * time.Millisecond),
		CheckTimeout:            Duration(500 * time.Millisecond),
		ServiceNameHeader:       "X-Service-Name",
		HTTPHeadersToCopy:       []string{"Host", "X-Request-Id"},
		LogPath:                 "/var/log/hacheck/hacheck.log",
		MySQLUsername:           "hacheck",
		MySQLPassword:           "s3cret-pw",
		PostgresUsername:        "monitor",
		PostgresPassword:        "pg-s3cret",
		PostgresDatabase:        "health",
		RlimitNofile:            "8192",
		MemoryLimit:             64 << 20,
		CheckAllowedCIDRs:       mustPrefixes(t, "10.20.0.0/16", "fd00::/8"),
		AllowRemoteSpoolChanges: true,
		RemoteSpoolAllowedCIDRs: mustPrefixes(t, "10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"),
		RemoteSpoolToken:        "tok-e7c1",
		MaxSourceIPs:            50,
		MaxServices:             100,
		SourceNetworks: map[string][]netip.Prefix{
			"lb-east":   mustPrefixes(t, "10.1.0.0/16"),
			"lb-west":   mustPrefixes(t, "10.2.0.0/16", "2001:db8:2::/48"),
			"lb_single": mustPrefixes(t, "10.3.0.0/16"),
		},
		Port:               6666,
		AgentPort:          3334,
		LBWindow:           Duration(45 * time.Second),
		LBSources:          mustPrefixes(t, "10.1.0.0/16", "10.2.0.0/16"),
		MinRemainingWeight: 2,
	}
	python := Default()
	python.CacheTime = Duration(5 * time.Second)
	python.CheckTimeout = Duration(3 * time.Second)
	python.ServiceNameHeader = "X-Service"
	python.LogPath = "stdout"
	python.MySQLUsername, python.MySQLPassword = "monitor", "12345"
	python.RlimitNofile = "max"
	python.AllowRemoteSpoolChanges = true
	python.HTTPHeadersToCopy = []string{"Host", "X-Forwarded-For"}

	for file, want := range map[string]Config{
		"valid-full.yml":          full,
		"valid-python.yml":        python,
		"valid-comments-only.yml": Default(),
		"valid-nulls.yml":         Default(),
	} {
		t.Run(file, func(t *testing.T) {
			// Parse, not Load: git checks fixtures out world-readable, which
			// Load rightly warns about for the ones holding a password.
			data, err := os.ReadFile(filepath.Join("testdata", file))
			if err != nil {
				t.Fatal(err)
			}
			cfg, warnings, err := Parse(data)
			if err != nil || len(warnings) != 0 {
				t.Fatalf("Parse: warnings %q, err %v; want none", warnings, err)
			}
			assertConfig(t, cfg, want)
		})
	}
}

func TestExampleConfigLoadsCleanly(t *testing.T) {
	const path = "../deploy/config.example.yml"
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && os.Getenv("CI") == "" {
		t.Skipf("%s is not written yet", path)
	}
	if err != nil {
		t.Fatal(err)
	}
	cfg, warnings, err := Load(path)
	if err != nil || len(warnings) != 0 {
		t.Fatalf("Load(%s): warnings %q, err %v", path, warnings, err)
	}
	// The example promises that, as shipped, it behaves exactly like no config file.
	assertConfig(t, cfg, Default())
	// Every key's default is documented, and the example is where operators look.
	for _, f := range fields {
		key := f.key
		if !strings.Contains(string(data), "\n"+key+":") {
			t.Errorf("%s does not show key %s", path, key)
		}
	}
}

// badConfigs are configs that must be refused, each beside its exact error.
var badConfigs = []struct {
	name, yaml, err string
}{
	// Wrong types, one per key.
	{"cache_time word", `cache_time: ten`, `line 1: config key cache_time: must be a number of seconds >= 0 or a duration like "1.5s", got "ten"`},
	{"cache_time list", `cache_time: [10]`, `line 1: config key cache_time: must be a number of seconds >= 0 or a duration like "1.5s", got a list`},
	{"cache_time bool", `cache_time: true`, `line 1: config key cache_time: must be a number of seconds >= 0 or a duration like "1.5s", got true`},
	{"check_timeout map", `check_timeout: {s: 1}`, `line 1: config key check_timeout: must be a number of seconds > 0 and <= 300 or a duration like "1.5s", got a mapping`},
	{"service_name_header list", `service_name_header: [X-A]`, `line 1: config key service_name_header: must be a valid HTTP header name or empty, got a list`},
	{"service_name_header bool", `service_name_header: true`, `line 1: config key service_name_header: must be a valid HTTP header name or empty, got true`},
	{"http_headers_to_copy map", "http_headers_to_copy:\n  Host: true", `line 2: config key http_headers_to_copy: must be a list of HTTP header names, got a mapping`},
	{"http_headers_to_copy nested", `http_headers_to_copy: [Host, [X-A]]`, `line 1: config key http_headers_to_copy[1]: must be a valid HTTP header name, got a list`},
	{"log_path list", `log_path: [stderr]`, `line 1: config key log_path: must be "stdout", "stderr" or a file path, got a list`},
	{"mysql_username map", `mysql_username: {a: b}`, `line 1: config key mysql_username: must be a string, got a mapping`},
	{"mysql_password bool", `mysql_password: true`, `line 1: config key mysql_password: must be a string, got a boolean`},
	{"postgres_username map", `postgres_username: {a: b}`, `line 1: config key postgres_username: must be a string, got a mapping`},
	{"postgres_password bool", `postgres_password: true`, `line 1: config key postgres_password: must be a string, got a boolean`},
	{"postgres_database list", `postgres_database: [postgres]`, `line 1: config key postgres_database: must be a database name of 1-63 bytes, got a list`},
	{"rlimit_nofile list", `rlimit_nofile: [max]`, `line 1: config key rlimit_nofile: must be "max" or a positive integer, got a list`},
	{"allow_remote_spool_changes word", `allow_remote_spool_changes: maybe`, `line 1: config key allow_remote_spool_changes: must be true or false, got "maybe"`},
	{"allow_remote_spool_changes quoted", `allow_remote_spool_changes: "yes"`, `line 1: config key allow_remote_spool_changes: must be true or false, got "yes"`},
	{"allow_remote_spool_changes number", `allow_remote_spool_changes: 1`, `line 1: config key allow_remote_spool_changes: must be true or false, got 1`},
	{"remote_spool_allowed_cidrs map", `remote_spool_allowed_cidrs: {a: 10.0.0.0/8}`, `line 1: config key remote_spool_allowed_cidrs: must be a list of CIDRs or IP addresses, got a mapping`},
	{"remote_spool_token list", `remote_spool_token: [a]`, `line 1: config key remote_spool_token: must be a string, got a list`},
	{"max_source_ips word", `max_source_ips: many`, `line 1: config key max_source_ips: must be an integer from 1 to 1000000, got "many"`},
	{"max_services float", `max_services: 1.5`, `line 1: config key max_services: must be an integer from 1 to 1000000, got 1.5`},
	{"max_services quoted", `max_services: "100"`, `line 1: config key max_services: must be an integer from 1 to 1000000, got "100"`},
	{"source_networks list", `source_networks: [10.0.0.0/8]`, `line 1: config key source_networks: must be a mapping of network names to lists of CIDRs, got a list`},
	{"agent_port word", `agent_port: off`, `line 1: config key agent_port: must be a port number from 0 to 65535 (0: off), got "off"`},

	// Wrong values.
	{"negative cache_time", `cache_time: -1`, `line 1: config key cache_time: must be a number of seconds >= 0 or a duration like "1.5s", got -1`},
	{"negative cache_time duration", `cache_time: -2s`, `line 1: config key cache_time: must be a number of seconds >= 0 or a duration like "1.5s", got -2`},
	{"cache_time overflow", `cache_time: 1e300`, `line 1: config key cache_time: must be a number of seconds >= 0 or a duration like "1.5s", got 1e300`},
	{"cache_time nan", `cache_time: .nan`, `line 1: config key cache_time: must be a number of seconds >= 0 or a duration like "1.5s", got .nan`},
	{"zero check_timeout", `check_timeout: 0`, `line 1: config key check_timeout: must be a number of seconds > 0 and <= 300 or a duration like "1.5s", got 0`},
	{"huge check_timeout", `check_timeout: 5m1s`, `line 1: config key check_timeout: must be a number of seconds > 0 and <= 300 or a duration like "1.5s", got 301`},
	{"bad service_name_header", `service_name_header: X Service`, `line 1: config key service_name_header: must be a valid HTTP header name or empty, got "X Service"`},
	{"bad header to copy", `http_headers_to_copy: [Host, "X-A:"]`, `line 1: config key http_headers_to_copy[1]: must be a valid HTTP header name, got "X-A:"`},
	{"header copied twice", `http_headers_to_copy: [Host, host]`, `line 1: config key http_headers_to_copy[1]: "host" is listed twice`},
	{"empty log_path", `log_path: ""`, `line 1: config key log_path: must be "stdout", "stderr" or a file path, got ""`},
	{"empty postgres_database", `postgres_database: ""`, `line 1: config key postgres_database: must be a database name of 1-63 bytes, got ""`},
	{"long postgres_database", "postgres_database: " + strings.Repeat("d", 64), `line 1: config key postgres_database: must be a database name of 1-63 bytes, got "` + strings.Repeat("d", 64) + `"`},
	{"rlimit_nofile lots", `rlimit_nofile: lots`, `line 1: config key rlimit_nofile: must be "max" or a positive integer, got "lots"`},
	{"rlimit_nofile zero", `rlimit_nofile: 0`, `line 1: config key rlimit_nofile: must be "max" or a positive integer, got "0"`},
	{"rlimit_nofile negative", `rlimit_nofile: -5`, `line 1: config key rlimit_nofile: must be "max" or a positive integer, got "-5"`},
	{"bad CIDR", `remote_spool_allowed_cidrs: [127.0.0.0/8, 10.0.0.0/33]`, `line 1: config key remote_spool_allowed_cidrs[1]: must be a CIDR like 10.0.0.0/8 or an IP address, got "10.0.0.0/33"`},
	{"CIDR word", "remote_spool_allowed_cidrs:\n  - localhost", `line 2: config key remote_spool_allowed_cidrs[0]: must be a CIDR like 10.0.0.0/8 or an IP address, got "localhost"`},
	{"CIDR with zone", `remote_spool_allowed_cidrs: ["fe80::1%eth0"]`, `line 1: config key remote_spool_allowed_cidrs[0]: must be a CIDR like 10.0.0.0/8 or an IP address, got "fe80::1%eth0"`},
	{"check_allowed_cidrs empty", `check_allowed_cidrs: []`, `line 1: config key check_allowed_cidrs: must list at least one CIDR (0.0.0.0/0 and ::/0: any client)`},
	{"check_allowed_cidrs with zone", `check_allowed_cidrs: ["fe80::1%eth0"]`, `line 1: config key check_allowed_cidrs[0]: must be a CIDR like 10.0.0.0/8 or an IP address, got "fe80::1%eth0"; line 1: config key check_allowed_cidrs: must list at least one CIDR (0.0.0.0/0 and ::/0: any client)`},
	{"max_services zero", `max_services: 0`, `line 1: config key max_services: must be an integer from 1 to 1000000, got 0`},
	{"max_source_ips too many", `max_source_ips: 1000001`, `line 1: config key max_source_ips: must be an integer from 1 to 1000000, got 1000001`},
	{"max_services overflow", `max_services: 99999999999999999999`, `line 1: config key max_services: must be an integer from 1 to 1000000, got 99999999999999999999`},
	{"source network other", "source_networks:\n  other: [10.0.0.0/8]", `line 2: config key source_networks: network name "other" is reserved for sources beyond max_source_ips`},
	{"source network bad name", `source_networks: {"lb east": [10.0.0.0/8]}`, `line 1: config key source_networks: network name "lb east" must be 1-128 characters of [A-Za-z0-9_.-]`},
	{"source network named like an IP", `source_networks: {10.0.0.1: [10.0.0.0/8]}`, `line 1: config key source_networks: network name "10.0.0.1" must not be an IP address (sources outside every network are counted by address)`},
	{"source network bad CIDR", "source_networks:\n  lb: [10.0.0.0/8, 300.0.0.0/8]", `line 2: config key source_networks.lb[1]: must be a CIDR like 10.0.0.0/8 or an IP address, got "300.0.0.0/8"`},
	{"source network empty", `source_networks: {lb: []}`, `line 1: config key source_networks.lb: must list at least one CIDR`},
	{"source network null", `source_networks: {lb: ~}`, `line 1: config key source_networks.lb: must list at least one CIDR`},
	{"source network twice", "source_networks:\n  lb: 10.0.0.0/8\n  lb: 10.1.0.0/16", `line 3: config key source_networks: network "lb" is defined twice`},
	{"prefix in two networks", `source_networks: {a: 10.0.0.0/8, b: 10.1.2.3/8}`, `line 1: config key source_networks.b: 10.0.0.0/8 is also listed under "a"`},
	{"port zero", `port: 0`, `line 1: config key port: must be a port number from 1 to 65535, got 0`},
	{"port word", `port: http`, `line 1: config key port: must be a port number from 1 to 65535, got "http"`},
	{"agent_port too big", `agent_port: 65536`, `line 1: config key agent_port: must be a port number from 0 to 65535 (0: off), got 65536`},
	{"lb_window zero", `lb_window: 0`, `line 1: config key lb_window: must be a number of seconds > 0 and <= 3600 or a duration like "30s", got 0`},
	{"lb_window a day", `lb_window: 24h`, `line 1: config key lb_window: must be a number of seconds > 0 and <= 3600 or a duration like "30s", got 86400`},
	{"lb_window word", `lb_window: long`, `line 1: config key lb_window: must be a number of seconds > 0 and <= 3600 or a duration like "30s", got "long"`},
	{"memory_limit tiny", `memory_limit: 1MiB`, `line 1: config key memory_limit: must be "off", 0, or at least 16MiB: bytes, or a number with B, KiB, MiB, GiB or TiB, got 1MiB`},
	{"memory_limit unit", `memory_limit: 64MB`, `line 1: config key memory_limit: must be "off", 0, or at least 16MiB: bytes, or a number with B, KiB, MiB, GiB or TiB, got "64MB"`},
	{"memory_limit negative", `memory_limit: -1`, `line 1: config key memory_limit: must be "off", 0, or at least 16MiB: bytes, or a number with B, KiB, MiB, GiB or TiB, got -1`},
	{"lb_sources empty", `lb_sources: []`, `line 1: config key lb_sources: must list at least one CIDR (0.0.0.0/0 and ::/0: any address)`},
	{"lb_sources word", `lb_sources: [haproxy1]`, `line 1: config key lb_sources[0]: must be a CIDR like 10.0.0.0/8 or an IP address, got "haproxy1"; line 1: config key lb_sources: must list at least one CIDR (0.0.0.0/0 and ::/0: any address)`},
	{"min_remaining_weight negative", `min_remaining_weight: -1`, `line 1: config key min_remaining_weight: must be an integer from 0 to 1000000, got -1`},

	// The file's shape.
	{"key twice", "cache_time: 1\ncheck_timeout: 2\ncache_time: 3", `line 3: config key cache_time: set twice (first on line 1)`},
	{"two documents", "cache_time: 1\n---\ncheck_timeout: 2\n", `line 2: config holds more than one YAML document (a second starts here); put every key in one`},
	{"trailing document marker", "cache_time: 1\n---\n", `line 2: config holds more than one YAML document (a second starts here); put every key in one`},
	{"a list", "- cache_time: 1\n", `line 1: config must be a mapping of keys to values, got a list`},
	{"a word", "hello\n", `line 1: config must be a mapping of keys to values, got "hello"`},
	{"syntax error", "cache_time: 1\ncheck_timeout: 2\n  max_services: 3\n", `yaml: line 3: mapping values are not allowed in this context`},
	{"merge key", "base: &b {cache_time: 1}\n<<: *b\n", `line 2: YAML merge keys (<<) are not supported in the config; write the keys out`},
	{"list as key", "? [cache_time]\n: 1\n", `line 1: config keys must be plain names, got a list`},
	{"alias cycle", "x: &a [*a]\nhttp_headers_to_copy: *a\n", `line 1: config key http_headers_to_copy[0]: must be a valid HTTP header name, got a list`},
	{"several bad keys", "cache_time: ten\nmax_services: 0\nlog_path: [x]\n", `line 1: config key cache_time: must be a number of seconds >= 0 or a duration like "1.5s", got "ten"; line 2: config key max_services: must be an integer from 1 to 1000000, got 0; line 3: config key log_path: must be "stdout", "stderr" or a file path, got a list`},
	{"too big", "# " + strings.Repeat("x", maxConfigBytes), `config is larger than 4 MiB`},
}

func TestParseConfigRefusesBadConfigs(t *testing.T) {
	for _, tc := range badConfigs {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _, err := Parse([]byte(tc.yaml))
			if err == nil {
				t.Fatalf("Parse(%q) accepted it: %v", tc.yaml, cfg)
			}
			if err.Error() != tc.err {
				t.Errorf("Parse(%q) error\n got: %s\nwant: %s", tc.yaml, err, tc.err)
			}
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Errorf("error is not one line: %q", err)
			}
			assertConfig(t, cfg, Config{})
		})
	}
}

// badFiles are fixtures refused by Load, whose errors start with the path.
var badFiles = map[string]string{
	"invalid-two-documents.yml": `line 2: config holds more than one YAML document (a second starts here); put every key in one`,
	"invalid-syntax.yml":        `yaml: line 3: mapping values are not allowed in this context`,
	"invalid-map-for-list.yml":  `line 3: config key http_headers_to_copy: must be a list of HTTP header names, got a mapping`,
	"invalid-not-a-mapping.yml": `line 1: config must be a mapping of keys to values, got a list`,
	"invalid-many.yml": `line 2: config key cache_time: must be a number of seconds >= 0 or a duration like "1.5s", got "ten"; ` +
		`line 3: config key check_timeout: must be a number of seconds > 0 and <= 300 or a duration like "1.5s", got 0; ` +
		`line 4: config key max_services: must be an integer from 1 to 1000000, got 0; ` +
		`line 6: config key source_networks: network name "other" is reserved for sources beyond max_source_ips`,
	"invalid-secret-types.yml": `line 2: config key mysql_password: must be a string, got a list; line 3: config key remote_spool_token: must be a string, got a mapping; line 4: config key postgres_password: must be a string, got a list`,
}

func TestLoadConfigRefusesBadFiles(t *testing.T) {
	for file, want := range badFiles {
		t.Run(file, func(t *testing.T) {
			path := filepath.Join("testdata", file)
			_, _, err := Load(path)
			if err == nil {
				t.Fatal("Load accepted it")
			}
			if got, want := err.Error(), path+": "+want; got != want {
				t.Errorf("Load error\n got: %s\nwant: %s", got, want)
			}
		})
	}
	// Every invalid fixture is in the table, so a new one cannot go untested.
	files, _ := filepath.Glob(filepath.Join("testdata", "invalid-*.yml"))
	for _, f := range files {
		if _, ok := badFiles[filepath.Base(f)]; !ok {
			t.Errorf("%s has no expected error in badFiles", f)
		}
	}
}

func TestLoadConfigReadErrorsNameThePath(t *testing.T) {
	cfg, warnings, err := Load("")
	if err != nil || warnings != nil {
		t.Fatalf(`Load("") = %q, %v`, warnings, err)
	}
	assertConfig(t, cfg, Default())

	missing := filepath.Join(t.TempDir(), "nope.yml")
	_, _, err = Load(missing)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("Load(missing) = %v; want a not-exist error naming %s", err, missing)
	}
	if _, _, err := Load(t.TempDir()); err == nil || !strings.HasPrefix(err.Error(), "cannot read config file: ") {
		t.Errorf("Load(directory) = %v", err)
	}
}

func TestUnknownKeysWarn(t *testing.T) {
	in := "cache_tme: 5\ncheck_timeout: 3\nfrobnicate: [1]\n1: x\n"
	cfg, warnings, err := Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`line 1: unknown key "cache_tme" ignored (did you mean "cache_time"?)`,
		`line 3: unknown key "frobnicate" ignored`,
		`line 4: unknown key "1" ignored`,
	}
	if !reflect.DeepEqual(warnings, want) {
		t.Errorf("warnings\n got: %q\nwant: %q", warnings, want)
	}
	if time.Duration(cfg.CacheTime) != defaultCacheTime || time.Duration(cfg.CheckTimeout) != 3*time.Second {
		t.Errorf("the known keys around unknown ones were not applied: %v", cfg)
	}

	path := filepath.Join(t.TempDir(), "c.yml")
	if err := os.WriteFile(path, []byte(in), 0o600); err != nil {
		t.Fatal(err)
	}
	_, warnings, err = Load(path)
	if err != nil || len(warnings) != 3 || warnings[0] != path+": "+want[0] {
		t.Errorf("Load warnings = %q, %v; want them prefixed with the path", warnings, err)
	}
}

// A config written for the Python hacheck keeps working: its timeout key is read as
// check_timeout, max_clients is ignored with a warning, and a file that sets the timeout under
// both names is refused rather than guessed at.
func TestPythonKeys(t *testing.T) {
	const bothNames = `config key %s: %s (line 1) is the same setting under another name; keep only check_timeout`
	tests := []struct {
		name     string
		yaml     string
		timeout  time.Duration
		warnings []string
		err      string
	}{
		{"healthcheck_timeout", "healthcheck_timeout: 3", 3 * time.Second, nil, ""},
		{"healthcheck_timeout as PyYAML float", "healthcheck_timeout: 2.5", 2500 * time.Millisecond, nil, ""},
		{"healthcheck_timeout null keeps the default", "healthcheck_timeout: null", defaultCheckTimeout, nil, ""},
		{"max_clients", "max_clients: 10\ncheck_timeout: 4", 4 * time.Second,
			[]string{"line 1: key max_clients ignored: checks are not capped by a client count (concurrent requests for one check share it)"}, ""},
		{"both, new name first", "check_timeout: 5\nhealthcheck_timeout: 5", 0, nil,
			"line 2: " + fmt.Sprintf(bothNames, "healthcheck_timeout", "check_timeout")},
		{"both, old name first", "healthcheck_timeout: 5\ncheck_timeout: 7", 0, nil,
			"line 2: " + fmt.Sprintf(bothNames, "check_timeout", "healthcheck_timeout")},
		{"healthcheck_timeout twice", "healthcheck_timeout: 1\nhealthcheck_timeout: 2", 0, nil,
			"line 2: config key healthcheck_timeout: set twice (first on line 1)"},
		{"healthcheck_timeout out of range", "cache_time: 1\nhealthcheck_timeout: 0", 0, nil,
			`line 2: config key healthcheck_timeout: must be a number of seconds > 0 and <= 300 or a duration like "1.5s", got 0`},
		{"healthcheck_timeout not a number", "healthcheck_timeout: soon", 0, nil,
			`line 1: config key healthcheck_timeout: must be a number of seconds > 0 and <= 300 or a duration like "1.5s", got "soon"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, warnings, err := Parse([]byte(tt.yaml))
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("Parse error = %v\nwant %s", err, tt.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(warnings, tt.warnings) {
				t.Fatalf("Parse: warnings %q, err %v; want warnings %q", warnings, err, tt.warnings)
			}
			if time.Duration(cfg.CheckTimeout) != tt.timeout {
				t.Errorf("check_timeout = %v, want %v", time.Duration(cfg.CheckTimeout), tt.timeout)
			}
		})
	}
}

func TestOtherWarnings(t *testing.T) {
	_, warnings, err := Parse([]byte("allow_remote_spool_changes: true\nremote_spool_allowed_cidrs: [10.0.0.0/8]\n"))
	if err != nil || len(warnings) != 1 || !strings.Contains(warnings[0], "without a token") {
		t.Errorf("remote spool changes from a network without a token: warnings %q, err %v", warnings, err)
	}
	for _, quiet := range []string{
		"allow_remote_spool_changes: true\n", // loopback only
		"allow_remote_spool_changes: true\nremote_spool_allowed_cidrs: [10.0.0.0/8]\nremote_spool_token: t\n",
	} {
		if _, warnings, _ := Parse([]byte(quiet)); len(warnings) != 0 {
			t.Errorf("Parse(%q) warned %q", quiet, warnings)
		}
	}

	cfg, warnings, err := Parse([]byte("max_services: 10\nagent_port: 3334\n"))
	if err != nil || cfg.AgentPort != 3334 || len(warnings) != 0 {
		t.Errorf("agent_port set: port %d, warnings %q, err %v; want none", cfg.AgentPort, warnings, err)
	}
	openPath := filepath.Join(t.TempDir(), "open.yml")
	if err := os.WriteFile(openPath, []byte("allow_remote_spool_changes: true\nremote_spool_allowed_cidrs: [10.0.0.0/8]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, warnings, err := Load(openPath); err != nil || len(warnings) != 1 || !strings.HasPrefix(warnings[0], openPath+": ") {
		t.Errorf("Load: warnings %q, err %v; want one, prefixed with the path", warnings, err)
	}

	path := filepath.Join(t.TempDir(), "c.yml")
	if err := os.WriteFile(path, []byte("mysql_password: pw\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil { // past the umask
		t.Fatal(err)
	}
	if _, warnings, err := Load(path); err != nil || len(warnings) != 1 || !strings.Contains(warnings[0], "every user may read it") {
		t.Errorf("world-readable file with a password: warnings %q, err %v", warnings, err)
	}
}

func TestParseConfigAcceptedForms(t *testing.T) {
	for _, tc := range []struct {
		yaml  string
		check func(Config) bool
	}{
		{"cache_time: 0", func(c Config) bool { return c.CacheTime == 0 }},
		{"cache_time: 0.25", func(c Config) bool { return time.Duration(c.CacheTime) == 250*time.Millisecond }},
		{"cache_time: 1m30s", func(c Config) bool { return time.Duration(c.CacheTime) == 90*time.Second }},
		{`cache_time: "10"`, func(c Config) bool { return time.Duration(c.CacheTime) == 10*time.Second }},
		{"check_timeout: 300", func(c Config) bool { return time.Duration(c.CheckTimeout) == 300*time.Second }},
		{"check_timeout: 2.5e1", func(c Config) bool { return time.Duration(c.CheckTimeout) == 25*time.Second }},
		{"service_name_header: ''", func(c Config) bool { return c.ServiceNameHeader == "" }},
		{"http_headers_to_copy: []", func(c Config) bool { return len(c.HTTPHeadersToCopy) == 0 && c.HTTPHeadersToCopy != nil }},
		{"http_headers_to_copy: X-A", func(c Config) bool { return reflect.DeepEqual(c.HTTPHeadersToCopy, HeaderNames{"X-A"}) }},
		{"rlimit_nofile: MAX", func(c Config) bool { return c.RlimitNofile == "max" }},
		{`rlimit_nofile: "4096"`, func(c Config) bool { return c.RlimitNofile == "4096" }},
		{"allow_remote_spool_changes: on", func(c Config) bool { return bool(c.AllowRemoteSpoolChanges) }},
		{"allow_remote_spool_changes: False", func(c Config) bool { return !bool(c.AllowRemoteSpoolChanges) }},
		{"remote_spool_allowed_cidrs: []", func(c Config) bool { return len(c.RemoteSpoolAllowedCIDRs) == 0 }},
		{"remote_spool_allowed_cidrs: '::1'", func(c Config) bool {
			return reflect.DeepEqual(c.RemoteSpoolAllowedCIDRs, Prefixes{netip.MustParsePrefix("::1/128")})
		}},
		{"max_services: 1_000_000", func(c Config) bool { return c.MaxServices == 1_000_000 }},
		{"max_source_ips: 0x10", func(c Config) bool { return c.MaxSourceIPs == 16 }},
		{"source_networks: {}", func(c Config) bool { return len(c.SourceNetworks) == 0 }},
		{"source_networks: {Other: 10.0.0.0/8}", func(c Config) bool { return len(c.SourceNetworks["Other"]) == 1 }},
		{"agent_port: 0", func(c Config) bool { return c.AgentPort == 0 }},
		{"lb_window: 10", func(c Config) bool { return time.Duration(c.LBWindow) == 10*time.Second }},
		{"lb_window: 1m", func(c Config) bool { return time.Duration(c.LBWindow) == time.Minute }},
		{"lb_window: null", func(c Config) bool { return time.Duration(c.LBWindow) == 30*time.Second }},
		{"min_remaining_weight: 3", func(c Config) bool { return c.MinRemainingWeight == 3 }},
		{"lb_sources: 10.1.2.3", func(c Config) bool {
			return reflect.DeepEqual(c.LBSources, Prefixes{netip.MustParsePrefix("10.1.2.3/32")})
		}},
		{"memory_limit: off", func(c Config) bool { return c.MemoryLimit == 0 }},
		{"memory_limit: 0", func(c Config) bool { return c.MemoryLimit == 0 }},
		{"memory_limit: 33554432", func(c Config) bool { return c.MemoryLimit == 32<<20 }},
		{"memory_limit: 1GiB", func(c Config) bool { return c.MemoryLimit == 1<<30 }},
		{"memory_limit: null", func(c Config) bool { return c.MemoryLimit == 40<<20 }},
		{"lb_sources: null", func(c Config) bool { return len(c.LBSources) == 2 && c.LBSources[0].Bits() == 0 }},
		{"defaults: &d 5\ncache_time: *d", func(c Config) bool { return time.Duration(c.CacheTime) == 5*time.Second }},
	} {
		cfg, _, err := Parse([]byte(tc.yaml))
		if err != nil || !tc.check(cfg) {
			t.Errorf("Parse(%q) = %v, %v", tc.yaml, cfg, err)
		}
	}
}

func TestValidateNamesEveryBadField(t *testing.T) {
	err := Config{}.Validate()
	want := `config key port: must be a port number from 1 to 65535, got 0; ` +
		`config key check_timeout: must be a number of seconds > 0 and <= 300 or a duration like "1.5s", got 0; ` +
		`config key log_path: must be "stdout", "stderr" or a file path, got ""; ` +
		`config key postgres_database: must be a database name of 1-63 bytes, got ""; ` +
		`config key check_allowed_cidrs: must list at least one CIDR (0.0.0.0/0 and ::/0: any client); ` +
		`config key max_source_ips: must be an integer from 1 to 1000000, got 0; ` +
		`config key max_services: must be an integer from 1 to 1000000, got 0; ` +
		`config key lb_window: must be a number of seconds > 0 and <= 3600 or a duration like "30s", got 0; ` +
		`config key lb_sources: must list at least one CIDR (0.0.0.0/0 and ::/0: any address)`
	if err == nil || err.Error() != want {
		t.Errorf("Config{}.Validate()\n got: %v\nwant: %s", err, want)
	}

	c := Default()
	c.RemoteSpoolAllowedCIDRs = append(c.RemoteSpoolAllowedCIDRs, netip.Prefix{})
	c.SourceNetworks = map[string][]netip.Prefix{"b": mustPrefixes(t, "10.0.0.0/8"), "a": mustPrefixes(t, "10.0.0.0/8"), "other": nil}
	c.RlimitNofile = "lots"
	c.AgentPort = -1
	c.LBWindow = Duration(2 * time.Hour)
	c.MinRemainingWeight = -1
	want = `config key rlimit_nofile: must be "max" or a positive integer, got "lots"; ` +
		`config key remote_spool_allowed_cidrs[2]: must be a CIDR like 10.0.0.0/8 or an IP address, got an invalid prefix; ` +
		`config key source_networks.b: 10.0.0.0/8 is also listed under "a"; ` +
		`config key source_networks: network name "other" is reserved for sources beyond max_source_ips; ` +
		`config key agent_port: must be a port number from 0 to 65535 (0: off), got -1; ` +
		`config key lb_window: must be a number of seconds > 0 and <= 3600 or a duration like "30s", got 7200; ` +
		`config key min_remaining_weight: must be an integer from 0 to 1000000, got -1`
	if err := c.Validate(); err == nil || err.Error() != want {
		t.Errorf("Validate()\n got: %v\nwant: %s", err, want)
	}
}

func TestSecretsNeverShown(t *testing.T) {
	const pw, token, user = "hunter2-pw", "hunter2-token", "hunter2-user"
	c := Default()
	c.MySQLUsername, c.MySQLPassword, c.RemoteSpoolToken = user, pw, token
	c.PostgresUsername, c.PostgresPassword = user+"-pg", pw+"-pg"
	j, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(j), "hunter2") {
		t.Errorf("secret in JSON: %s", j)
	}
	for _, shown := range []string{c.String(), fmt.Sprint(c), fmt.Sprintf("%v %+v %#v %s", c, c, c, c), fmt.Sprintf("%v", &c)} {
		if strings.Contains(shown, "hunter2") {
			t.Errorf("secret shown: %s", shown)
		}
		if strings.Count(shown, redactedText) < 5 {
			t.Errorf("set secrets should show as %s: %s", redactedText, shown)
		}
	}
	if c.MySQLPassword != pw {
		t.Error("Redacted changed the original")
	}

	for _, in := range []string{
		"mysql_password: [" + pw + "]", "mysql_password: {" + pw + ": 1}", "mysql_username: [" + user + "]",
		"remote_spool_token: [" + token + "]", "remote_spool_token: !!binary aHVudGVyMg==",
		"postgres_password: [" + pw + "]", "postgres_username: {" + user + ": 1}",
	} {
		_, _, err := Parse([]byte(in))
		if err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Parse(%q) = %v; want an error that does not echo the secret", in, err)
		}
	}
	_, _, err = Load(filepath.Join("testdata", "invalid-secret-types.yml"))
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("Load(invalid-secret-types.yml) = %v", err)
	}
}

// String's output is itself a config (JSON is YAML), so a dump can be fed back in.
func TestStringRoundTrips(t *testing.T) {
	cfg, _, err := Load(filepath.Join("testdata", "valid-full.yml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.MySQLUsername, cfg.MySQLPassword, cfg.RemoteSpoolToken = "", "", ""
	cfg.PostgresUsername, cfg.PostgresPassword = "", ""
	for _, c := range []Config{cfg, Default()} {
		back, _, err := Parse([]byte(c.String()))
		if err != nil {
			t.Fatalf("Parse(%s): %v", c, err)
		}
		assertConfig(t, back, c)
	}
}

func FuzzParseConfig(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.yml"))
	files = append(files, "../deploy/config.example.yml")
	for _, file := range files {
		if data, err := os.ReadFile(file); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("healthcheck_timeout: 1\nmax_clients: 3\ncheck_timeout: 2\n"))
	for _, tc := range badConfigs {
		if len(tc.yaml) < 1<<16 {
			f.Add([]byte(tc.yaml))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, warnings, err := Parse(data)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Errorf("error is not one line: %q", err)
			}
			return
		}
		if verr := cfg.Validate(); verr != nil {
			t.Errorf("Parse accepted a config that Validate refuses: %v", verr)
		}
		for _, w := range warnings {
			if strings.ContainsAny(w, "\r\n") {
				t.Errorf("warning is not one line: %q", w)
			}
		}
	})
}

// Every key is a field whose type decodes itself and whose want tag says what it accepts: Parse
// relies on both to decode a key and to word its errors.
func TestEveryKeyDecodesItself(t *testing.T) {
	ct := reflect.TypeFor[Config]()
	unmarshaler := reflect.TypeFor[yaml.Unmarshaler]()
	for i := range ct.NumField() {
		f := ct.Field(i)
		key, want := f.Tag.Get("yaml"), f.Tag.Get("want")
		if key == "" || !strings.HasPrefix(want, "must ") {
			t.Errorf("field %s: yaml tag %q, want tag %q; want a key and a requirement starting \"must \"", f.Name, key, want)
		}
		if !reflect.PointerTo(f.Type).Implements(unmarshaler) {
			t.Errorf("field %s (%s): its type has no UnmarshalYAML; use one of the value types in types.go", f.Name, f.Type)
		}
	}
}

func TestMaintenanceKeys(t *testing.T) {
	cfg, warnings, err := Parse([]byte("min_remaining_weight: 3\nmax_mark_age: 12h\n"))
	if err != nil || len(warnings) != 0 || cfg.MinRemainingWeight != 3 || time.Duration(cfg.MaxMarkAge) != 12*time.Hour {
		t.Fatalf("Parse = %+v, %q, %v", cfg, warnings, err)
	}
	for text, want := range map[string]string{
		"min_remaining_weight: -1":   "config key min_remaining_weight: must be an integer from 0 to 1000000, got -1",
		"min_remaining_weight: lots": "config key min_remaining_weight: must be an integer from 0 to 1000000",
		"max_mark_age: -5":           "config key max_mark_age: must be a number of seconds >= 0",
		"max_mark_age: forever":      "config key max_mark_age: must be a number of seconds >= 0",
	} {
		if _, _, err := Parse([]byte(text)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", text, err, want)
		}
	}
}

// The server's side of memory_limit: the runtime's limit is the config's, unless GOMEMLIMIT is
// set, which wins.
func TestMemoryLimitApply(t *testing.T) {
	was := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(was)
	noEnv := func(string) string { return "" }
	if got, env := MemoryLimit(48 << 20).Apply(noEnv); got != 48<<20 || env || debug.SetMemoryLimit(-1) != 48<<20 {
		t.Errorf("Apply(48MiB) = %d, %v; runtime limit %d", got, env, debug.SetMemoryLimit(-1))
	}
	if got, _ := MemoryLimit(0).Apply(noEnv); got != math.MaxInt64 || debug.SetMemoryLimit(-1) != math.MaxInt64 {
		t.Errorf("Apply(off) = %d; runtime limit %d, want none", got, debug.SetMemoryLimit(-1))
	}
	debug.SetMemoryLimit(30 << 20) // as the runtime does from GOMEMLIMIT=30MiB at startup
	env := func(k string) string {
		if k == "GOMEMLIMIT" {
			return "30MiB"
		}
		return ""
	}
	if got, fromEnv := MemoryLimit(48 << 20).Apply(env); got != 30<<20 || !fromEnv || debug.SetMemoryLimit(-1) != 30<<20 {
		t.Errorf("with GOMEMLIMIT set, Apply(48MiB) = %d, %v; runtime limit %d, want GOMEMLIMIT's", got, fromEnv, debug.SetMemoryLimit(-1))
	}
	for m, want := range map[MemoryLimit]string{0: "off", 40 << 20: "40MiB", 1 << 30: "1GiB", 1000: "1000", 3 << 10: "3KiB"} {
		if got := m.String(); got != want {
			t.Errorf("MemoryLimit(%d).String() = %q, want %q", int64(m), got, want)
		}
	}
}
