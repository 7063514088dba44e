package check

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// redisPort is the machine's Redis, a master with no password.
const redisPort = 6379

// protocolCase is one check of a table test: a protocol, the target and what must come back.
type protocolCase struct {
	name     string
	protocol string
	port     int
	query    string
	rawQuery string
	timeout  time.Duration // 0: 5s
	wantCode int
	outcome  Outcome
	msg      *regexp.Regexp
}

// runProtocolCases runs each case through reg and checks code, outcome, message and that the
// message is one line.
func runProtocolCases(t *testing.T, reg Registry, tests []protocolCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			timeout := tt.timeout
			if timeout == 0 {
				timeout = 5 * time.Second
			}
			got, err := reg[tt.protocol].Check(checkCtx(t, timeout), Target{Service: "svc", Port: tt.port, Query: tt.query, RawQuery: tt.rawQuery})
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if got.Code != tt.wantCode || got.Outcome != tt.outcome || !tt.msg.MatchString(got.Message) {
				t.Errorf("Check = %+v, want code %d, outcome %s, message matching %s", got, tt.wantCode, tt.outcome, tt.msg)
			}
			if strings.ContainsAny(got.Message, "\r\n") {
				t.Errorf("message %q spans lines", got.Message)
			}
		})
	}
}

func TestRedisAgainstRedis(t *testing.T) {
	port := requireLocal(t, redisPort, "Redis (no password)")
	runProtocolCases(t, NewRegistry(Options{}), []protocolCase{
		{name: "ping", protocol: "redis", port: port, wantCode: 200, outcome: OutcomeOK, msg: regexp.MustCompile(`^Sent PING, got back \+PONG$`)},
		{name: "sentinel ping of a redis", protocol: "sentinel", port: port, wantCode: 200, outcome: OutcomeOK, msg: regexp.MustCompile(`^Sent PING, got back \+PONG$`)},
		{name: "info without query is JSON", protocol: "redis-info", port: port, rawQuery: "role=slave", wantCode: 200, outcome: OutcomeOK, msg: regexp.MustCompile(`^\{.*"redis_version":"\d+\.\d+\.\d+".*"role":"master".*\}$`)},
		{name: "match without pairs is JSON", protocol: "redis-info", port: port, query: "match", wantCode: 200, outcome: OutcomeOK, msg: regexp.MustCompile(`^\{.*"role":"master"`)},
		{name: "match role", protocol: "redis-info", port: port, query: "match", rawQuery: "role=master", wantCode: 200, outcome: OutcomeOK, msg: regexp.MustCompile(`^Match found: field role, value master$`)},
		{name: "any pair matches", protocol: "redis-info", port: port, query: "match", rawQuery: "role=slave&redis_mode=standalone", wantCode: 200, outcome: OutcomeOK, msg: regexp.MustCompile(`^Match found: field redis_mode, value standalone$`)},
		{name: "no pair matches", protocol: "redis-info", port: port, query: "match", rawQuery: "role=slave&role=replica&nosuchfield=1", wantCode: 500, outcome: OutcomeUpstreamFail, msg: regexp.MustCompile(`^No matching field found: role=master, nosuchfield absent$`)},
		{name: "host pair ignored", protocol: "redis", port: port, rawQuery: "host=127.0.0.2&port=1", wantCode: 200, outcome: OutcomeOK, msg: regexp.MustCompile(`PONG`)},
	})
}

func TestRedisInfoJSONHasEveryField(t *testing.T) {
	port := requireLocal(t, redisPort, "Redis (no password)")
	got, err := NewRegistry(Options{})["redis-info"].Check(checkCtx(t, 5*time.Second), Target{Service: "svc", Port: port})
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]string
	if err := json.Unmarshal([]byte(got.Message), &fields); err != nil {
		t.Fatalf("message is not a JSON object of strings: %v: %q", err, got.Message)
	}
	for _, k := range []string{"redis_version", "role", "tcp_port", "connected_clients", "used_memory"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("INFO JSON lacks %s: %v", k, fields)
		}
	}
	if fields["tcp_port"] != "6379" {
		t.Errorf("tcp_port = %q, want 6379", fields["tcp_port"])
	}
}

// Servers that misbehave, and none: these need no Redis.
func TestRedisStubs(t *testing.T) {
	readCommand := func(r *bufio.Reader) {
		for range 3 { // *1, $4, the command
			if _, err := r.ReadString('\n'); err != nil {
				return
			}
		}
	}
	reply := func(s string) func(net.Conn, *bufio.Reader) {
		return func(conn net.Conn, r *bufio.Reader) {
			readCommand(r)
			_, _ = conn.Write([]byte(s))
			_, _ = r.ReadByte() // hold the connection until the client closes it
		}
	}
	endless := func(head, chunk string) func(net.Conn, *bufio.Reader) {
		return func(conn net.Conn, r *bufio.Reader) {
			readCommand(r)
			writeForever(conn, head+chunk)
		}
	}
	info := func(body string) string { return fmt.Sprintf("$%d\r\n%s\r\n", len(body), body) }
	noAuth := stubServer(t, reply("-NOAUTH Authentication required.\r\n"))
	pong := stubServer(t, reply("+PONG\r\n"))
	notRedis := stubServer(t, reply(info("# Server\r\nversion:1\r\n")))
	hugeBulk := stubServer(t, reply("$1000000000\r\n"))
	endlessLine := stubServer(t, endless("", strings.Repeat("x", 4096)))
	endlessBulk := stubServer(t, endless("$200000\r\n", strings.Repeat("k:v\r\n", 1000)))
	hangsUp := stubServer(t, func(conn net.Conn, r *bufio.Reader) {
		readCommand(r)
		_, _ = conn.Write([]byte("$100\r\nredis_version:7"))
	})
	trickle := stubServer(t, func(conn net.Conn, r *bufio.Reader) {
		readCommand(r)
		_, _ = conn.Write([]byte("$100\r\nredis_version:7"))
		_, _ = r.ReadByte()
	})
	garbage := stubServer(t, reply("HTTP/1.1 400 Bad Request\r\n"))
	controlChars := stubServer(t, reply(info("redis_version:7\r\nrole:mas\x1bter\r\n")))

	runProtocolCases(t, NewRegistry(Options{}), []protocolCase{
		{name: "refused", protocol: "redis", port: closedPort(t), wantCode: 503, outcome: OutcomeRefused, msg: regexp.MustCompile(`connection refused after \d+\.\d{3}s$`)},
		{name: "silent", protocol: "redis", port: silentPort(t), timeout: 200 * time.Millisecond, wantCode: 503, outcome: OutcomeTimeout, msg: regexp.MustCompile(`^reading PING reply: .* after \d+\.\d{3}s$`)},
		{name: "stub pong", protocol: "sentinel", port: pong, wantCode: 200, outcome: OutcomeOK, msg: regexp.MustCompile(`^Sent PING, got back \+PONG$`)},
		{name: "error reply", protocol: "redis", port: noAuth, wantCode: 500, outcome: OutcomeUpstreamFail, msg: regexp.MustCompile(`^Sent PING, got back "-NOAUTH Authentication required\."$`)},
		{name: "not http", protocol: "redis", port: garbage, wantCode: 500, outcome: OutcomeUpstreamFail, msg: regexp.MustCompile(`^Sent PING, got back a bad reply: malformed reply "HTTP/1\.1 400 Bad Request\\r\\n"$`)},
		{name: "info error reply", protocol: "redis-info", port: noAuth, wantCode: 500, outcome: OutcomeUpstreamFail, msg: regexp.MustCompile(`^Sent INFO, got back "-NOAUTH`)},
		{name: "info of something else", protocol: "redis-info", port: notRedis, wantCode: 500, outcome: OutcomeUpstreamFail, msg: regexp.MustCompile(`^Sent INFO, got back no redis_version field$`)},
		{name: "bulk beyond the cap", protocol: "redis-info", port: hugeBulk, wantCode: 500, outcome: OutcomeUpstreamFail, msg: regexp.MustCompile(`^Sent INFO, got back a bad reply: reply longer than 262144 bytes$`)},
		{name: "endless line cut at the cap", protocol: "redis-info", port: endlessLine, wantCode: 500, outcome: OutcomeUpstreamFail, msg: regexp.MustCompile(`^Sent INFO, got back a bad reply: reply longer than \d+ bytes$`)},
		{name: "endless pong line cut at the cap", protocol: "redis", port: endlessLine, wantCode: 500, outcome: OutcomeUpstreamFail, msg: regexp.MustCompile(`^Sent PING, got back a bad reply: reply longer than \d+ bytes$`)},
		{name: "bulk longer than it said", protocol: "redis-info", port: endlessBulk, wantCode: 500, outcome: OutcomeUpstreamFail, msg: regexp.MustCompile(`^Sent INFO, got back a bad reply: bulk reply not ended by CRLF$`)},
		{name: "hangs up mid-reply", protocol: "redis-info", port: hangsUp, wantCode: 503, outcome: OutcomeUpstreamFail, msg: regexp.MustCompile(`^reading INFO reply: unexpected EOF after \d+\.\d{3}s$`)},
		{name: "stops mid-reply", protocol: "redis-info", port: trickle, timeout: 200 * time.Millisecond, wantCode: 503, outcome: OutcomeTimeout, msg: regexp.MustCompile(`^reading INFO reply: .*timeout after \d+\.\d{3}s$`)},
		{name: "control characters in a value", protocol: "redis-info", port: controlChars, query: "match", rawQuery: "role=master", wantCode: 500, outcome: OutcomeUpstreamFail, msg: regexp.MustCompile(`^No matching field found: role=mas\?ter$`)},
	})
}

// A sentinel's INFO names its master's address; the check reports it and never goes there.
func TestSentinelMasterAddressIsNeverDialled(t *testing.T) {
	masterAddr, assertUntouched := untouchedListener(t)
	body := "# Server\r\nredis_version:7.0.15\r\nredis_mode:sentinel\r\n\r\n# Sentinel\r\nsentinel_masters:1\r\n" +
		"master0:name=mymaster,status=ok,address=" + masterAddr + ",slaves=0,sentinels=1\r\n"
	port := stubServer(t, func(conn net.Conn, r *bufio.Reader) {
		for range 3 {
			if _, err := r.ReadString('\n'); err != nil {
				return
			}
		}
		_, _ = fmt.Fprintf(conn, "$%d\r\n%s\r\n", len(body), body)
		_, _ = r.ReadByte()
	})
	runProtocolCases(t, NewRegistry(Options{}), []protocolCase{
		{name: "JSON names the master", protocol: "sentinel-info", port: port, wantCode: 200, outcome: OutcomeOK, msg: regexp.MustCompile(`"redis_master":"` + regexp.QuoteMeta(masterAddr) + `"`)},
		{name: "master matches", protocol: "sentinel-info", port: port, query: "match", rawQuery: "redis_master=" + masterAddr, wantCode: 200, outcome: OutcomeOK, msg: regexp.MustCompile(`^Match found: field redis_master, value ` + regexp.QuoteMeta(masterAddr) + `$`)},
		{name: "another master", protocol: "sentinel-info", port: port, query: "match", rawQuery: "redis_master=10.1.1.1:6379", wantCode: 500, outcome: OutcomeUpstreamFail, msg: regexp.MustCompile(`^No matching field found: redis_master=` + regexp.QuoteMeta(masterAddr) + `$`)},
		{name: "redis-info has no redis_master", protocol: "redis-info", port: port, query: "match", rawQuery: "redis_master=" + masterAddr, wantCode: 500, outcome: OutcomeUpstreamFail, msg: regexp.MustCompile(`^No matching field found: redis_master absent$`)},
	})
	assertUntouched()
}

// startSentinel runs `redis-server <conf> --sentinel` on a free loopback port, monitoring the
// machine's Redis, and returns its port once it answers. It is killed when the test ends.
func startSentinel(t *testing.T) int {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("redis-server: %v", err)
		}
		t.Skipf("redis-server: %v", err)
	}
	port := closedPort(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf") // the sentinel rewrites it: it must be its own
	config := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor mymaster 127.0.0.1 %d 1\n", port, dir, redisPort)
	if err := os.WriteFile(conf, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, conf, "--sentinel")
	var out syncBuilder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting sentinel: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	// Polling an external process is the one wait that has no event to block on.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if conn, err := net.DialTimeout("tcp", localAddr(port), time.Second); err == nil {
			_ = conn.Close()
			return port
		}
		if time.Now().After(deadline) {
			t.Fatalf("sentinel did not listen on %d within 10s; its output:\n%s", port, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSentinelAgainstSentinel(t *testing.T) {
	requireLocal(t, redisPort, "Redis (no password), for the sentinel to monitor")
	port := startSentinel(t)
	master := regexp.QuoteMeta(fmt.Sprintf("127.0.0.1:%d", redisPort))
	runProtocolCases(t, NewRegistry(Options{}), []protocolCase{
		{name: "ping", protocol: "sentinel", port: port, wantCode: 200, outcome: OutcomeOK, msg: regexp.MustCompile(`^Sent PING, got back \+PONG$`)},
		{name: "info JSON", protocol: "sentinel-info", port: port, wantCode: 200, outcome: OutcomeOK, msg: regexp.MustCompile(`"redis_master":"` + master + `".*"redis_mode":"sentinel"`)},
		{name: "master matches", protocol: "sentinel-info", port: port, query: "match", rawQuery: "redis_master=127.0.0.1:6379", wantCode: 200, outcome: OutcomeOK, msg: regexp.MustCompile(`^Match found: field redis_master, value ` + master + `$`)},
		{name: "mode matches", protocol: "sentinel-info", port: port, query: "match", rawQuery: "redis_mode=sentinel", wantCode: 200, outcome: OutcomeOK, msg: regexp.MustCompile(`^Match found: field redis_mode, value sentinel$`)},
		{name: "another master", protocol: "sentinel-info", port: port, query: "match", rawQuery: "redis_master=127.0.0.1:6380", wantCode: 500, outcome: OutcomeUpstreamFail, msg: regexp.MustCompile(`^No matching field found: redis_master=` + master + `$`)},
	})
}

func TestParseInfo(t *testing.T) {
	const sentinelInfo = "# Server\r\nredis_version:7.0.15\r\nexecutable:/usr/bin/redis-server\r\n\r\n# Sentinel\r\n" +
		"master0:name=a,status=ok,address=10.0.0.1:6379,slaves=1,sentinels=3\r\n" +
		"master1:name=b,status=ok,address=10.0.0.2:6380,slaves=1,sentinels=3\r\n"
	tests := []struct {
		name     string
		data     string
		sentinel bool
		want     map[string]string
	}{
		{"fields", "# Server\r\nredis_version:7.0.15\r\nrole:master\r\n", false, map[string]string{"redis_version": "7.0.15", "role": "master"}},
		{"empty value", "config_file:\r\n", false, map[string]string{"config_file": ""}},
		{"more than one colon skipped", "master0:address=10.0.0.1:6379\r\nrole:slave\r\n", false, map[string]string{"role": "slave"}},
		{"bare newlines", "a:1\nb:2", false, map[string]string{"a": "1", "b": "2"}},
		{"sentinel: last address wins", sentinelInfo, true, map[string]string{"redis_version": "7.0.15", "executable": "/usr/bin/redis-server", "redis_master": "10.0.0.2:6380"}},
		{"redis: no redis_master", sentinelInfo, false, map[string]string{"redis_version": "7.0.15", "executable": "/usr/bin/redis-server"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseInfo(tt.data, tt.sentinel)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("parseInfo = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestMatchPairs(t *testing.T) {
	got := fmt.Sprint(matchPairs("role=master&flag&empty=&a%20b=c%2Fd&bad=%zz&role=slave"))
	want := "[[role master] [a b c/d] [role slave]]"
	if got != want {
		t.Errorf("matchPairs = %s, want %s", got, want)
	}
}

// FuzzReadRESP: any bytes give a reply or an error, never a panic, and never a payload beyond
// the limit.
func FuzzReadRESP(f *testing.F) {
	for _, seed := range []string{"+PONG\r\n", "-ERR x\r\n", ":1\r\n", "$5\r\nhello\r\n", "$-1\r\n", "$3\r\nab\r\n", "$99999999999999999999\r\n", "*1\r\n", "\r\n", "+\n"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const limit = 64
		kind, payload, err := readRESP(bufio.NewReader(newCappedReader(strings.NewReader(string(data)), limit+32)), limit)
		if err != nil {
			return
		}
		if !strings.ContainsRune("+-:$", rune(kind)) {
			t.Errorf("kind %q accepted", kind)
		}
		if len(payload) > limit+32 {
			t.Errorf("payload of %d bytes beyond the cap", len(payload))
		}
	})
}

// FuzzParseInfo: any INFO text parses, no field spans lines, and neither does a match's answer.
func FuzzParseInfo(f *testing.F) {
	f.Add("# Server\r\nredis_version:7.0.15\r\nmaster0:name=m,address=127.0.0.1:6379,slaves=0\r\n", true)
	f.Add("a:b:c\n:\n::\n#:x\n", false)
	f.Fuzz(func(t *testing.T, data string, sentinel bool) {
		for k, v := range parseInfo(data, sentinel) {
			if strings.ContainsAny(k+v, "\n") {
				t.Errorf("field %q:%q spans lines", k, v)
			}
		}
		msg := matchInfo(parseInfo(data, sentinel), [][2]string{{"role", "master"}}).Message
		if strings.ContainsAny(msg, "\r\n") {
			t.Errorf("message %q spans lines", msg)
		}
	})
}
