package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hacheck/hacheck/config"
	"github.com/hacheck/hacheck/internal/testbin"
	"github.com/hacheck/hacheck/server"
	"github.com/hacheck/hacheck/spool"
)

// Subprocess tests run the real hacheck binary (internal/testbin builds it from the module's
// root) under its multi-call names: argv[0] dispatch and real concurrency between processes.
func TestMain(m *testing.M) { testbin.Main(m) }

type cliResult struct {
	code           int
	stdout, stderr string
}

type cliRunner struct {
	root  string
	clock time.Time
	vars  map[string]string
	// interactive: run as if a person were at a terminal.
	interactive bool
	// records: what the commands sent to the system log.
	records []string
}

func newRunner(t *testing.T) *cliRunner {
	t.Helper()
	return &cliRunner{root: t.TempDir(), clock: time.Unix(1795500000, 0), vars: map[string]string{"SUDO_USER": "alice"}}
}

// run runs the CLI in-process as argv0 with the runner's spool root and clock.
func (r *cliRunner) run(argv0 string, args ...string) cliResult {
	var stdout, stderr bytes.Buffer
	e := &Env{Stdout: &stdout, Stderr: &stderr, Getenv: func(k string) string { return r.vars[k] }, Now: func() time.Time { return r.clock },
		Interactive: r.interactive, SysLog: func(record string) error { r.records = append(r.records, record); return nil }}
	full := append(args[:len(args):len(args)], "--spool-root", r.root)
	code := run(argv0, full, e)
	return cliResult{code, stdout.String(), stderr.String()}
}

// marks are the names of what the runner's spool root holds.
func (r *cliRunner) marks(t *testing.T) []string {
	t.Helper()
	return spoolEntries(t, r.root)
}

// spoolEntries are the names of what a spool root holds.
func spoolEntries(t *testing.T, root string) []string {
	t.Helper()
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestDownStatusUp(t *testing.T) {
	for _, via := range []struct{ down, status, up []string }{
		{[]string{"hadown"}, []string{"hastatus"}, []string{"haup"}},
		{[]string{"hacheck", "down"}, []string{"hacheck", "status"}, []string{"hacheck", "up"}},
	} {
		t.Run(via.down[0], func(t *testing.T) {
			r := newRunner(t)
			call := func(cmd []string, args ...string) cliResult {
				return r.run(cmd[0], append(cmd[1:len(cmd):len(cmd)], args...)...)
			}
			if res := call(via.down, "-r", "kernel upgrade", "web"); res.code != 0 {
				t.Fatalf("down: %+v", res)
			}
			if res := call(via.status, "web"); res.code != 1 || res.stdout != "DOWN\tweb\tkernel upgrade\n" {
				t.Fatalf("status after down = %+v", res)
			}
			if res := call(via.up, "web"); res.code != 0 {
				t.Fatalf("up: %+v", res)
			}
			if res := call(via.status, "web"); res.code != 0 || res.stdout != "UP\tweb\n" {
				t.Fatalf("status after up = %+v", res)
			}
			if res := call(via.up, "web"); res.code != 0 {
				t.Fatalf("second up is not idempotent: %+v", res)
			}
		})
	}
}

func TestInstanceAndHostWideMarks(t *testing.T) {
	r := newRunner(t)
	if res := r.run("hadown", "-P", "8080", "-r", "disk", "web"); res.code != 0 {
		t.Fatalf("%+v", res)
	}
	if res := r.run("hastatus", "-P", "8080", "web"); res.code != 1 || !strings.HasPrefix(res.stdout, "DOWN\tweb\tdisk") {
		t.Fatalf("instance 8080: %+v", res)
	}
	if res := r.run("hastatus", "-P", "8081", "web"); res.code != 0 {
		t.Fatalf("instance 8081 must stay up: %+v", res)
	}
	if res := r.run("hastatus", "web"); res.code != 0 {
		t.Fatalf("the whole service must stay up: %+v", res)
	}
	if res := r.run("hadown", "-r", "rack move", "all"); res.code != 0 {
		t.Fatalf("%+v", res)
	}
	if res := r.run("hastatus", "api", "web"); res.code != 1 || res.stdout != "DOWN\tapi\track move\nDOWN\tweb\track move\n" {
		t.Fatalf("all must mark every service: %+v", res)
	}
	r.clock = r.clock.Add(90 * time.Minute)
	res := r.run("hashowdowned")
	lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
	if res.code != 0 || len(lines) != 2 ||
		!strings.HasPrefix(lines[0], "all\tport=0\track move\tdown since ") || !strings.Contains(lines[0], "(1h30m0s ago)\tnever expires") ||
		!strings.HasPrefix(lines[1], "web\tport=8080\tdisk\t") {
		t.Fatalf("hashowdowned = %+v", res)
	}
	res = r.run("hacheck", "downed", "--json")
	var marks []markJSON
	if err := json.Unmarshal([]byte(res.stdout), &marks); err != nil || len(marks) != 2 || marks[1].Port != 8080 || marks[0].AgeSeconds == nil || *marks[0].AgeSeconds != 5400 {
		t.Fatalf("downed --json = %s (%v)", res.stdout, err)
	}
}

func TestDownForExpiresByItself(t *testing.T) {
	r := newRunner(t)
	if res := r.run("hadown", "--for", "30m", "-r", "patching", "web"); res.code != 0 {
		t.Fatalf("%+v", res)
	}
	r.clock = r.clock.Add(29 * time.Minute)
	if res := r.run("hastatus", "web"); res.code != 1 {
		t.Fatalf("before expiry: %+v", res)
	}
	if res := r.run("hashowdowned"); !strings.Contains(res.stdout, "(in 1m0s)") {
		t.Fatalf("expiry not shown: %+v", res)
	}
	r.clock = r.clock.Add(time.Minute)
	if res := r.run("hastatus", "web"); res.code != 0 || res.stdout != "UP\tweb\n" {
		t.Fatalf("after expiry: %+v", res)
	}
}

// hadown -e takes what the older hadown took (a float): whole seconds or a fraction, which
// the mark keeps.
func TestDownExpirationTakesAFraction(t *testing.T) {
	tests := []struct {
		arg  string
		want time.Time
	}{
		{"1795500000.5", time.Unix(1795500000, 500_000_000)},
		{"1895500000", time.Unix(1895500000, 0)},
		{"1895500000.25", time.Unix(1895500000, 250_000_000)},
		{"1.8955e9", time.Unix(1895500000, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.arg, func(t *testing.T) {
			r := newRunner(t)
			if res := r.run("hadown", "-e", tt.arg, "-r", "patching", "web"); res.code != 0 {
				t.Fatalf("hadown -e %s: %+v", tt.arg, res)
			}
			m, ok := spool.New(r.root).Read("web", 0)
			if !ok || m.Err != nil || !m.Expiration.Equal(tt.want) {
				t.Fatalf("mark = %+v (found: %v), want expiration %v", m, ok, tt.want)
			}
		})
	}
}

func FuzzParseExpirationFlag(f *testing.F) {
	for _, seed := range []string{"1795500000.5", "0", "-1", "NaN", "1e300", "0x1p31", "soon", ""} {
		f.Add(seed)
	}
	now := time.Unix(1795500000, 0)
	f.Fuzz(func(t *testing.T, text string) {
		got, err := parseExpirationFlag(text, now)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Errorf("error spans lines: %q", err)
			}
			return
		}
		if !got.After(now) {
			t.Errorf("parseExpirationFlag(%q) = %v, not after now", text, got)
		}
	})
}

func TestBadInputWritesNothing(t *testing.T) {
	tests := []struct {
		args     []string
		code     int
		errorHas string
	}{
		{[]string{"hadown", "-e", "1795400000", "web"}, 2, "is not in the future"},
		{[]string{"hadown", "-e", "0", "web"}, 2, "is not in the future"},
		{[]string{"hadown", "--expiration=-5.5", "web"}, 2, "is not in the future"},
		{[]string{"hadown", "-e", "1795500000.0", "web"}, 2, "is not in the future"},
		{[]string{"hadown", "-e", "soon", "web"}, 2, "is not a unix time"},
		{[]string{"hadown", "-e", "NaN", "web"}, 2, "is not a unix time"},
		{[]string{"hadown", "-e", "Inf", "web"}, 2, "is not a unix time"},
		{[]string{"hadown", "-e", "1e400", "web"}, 2, "is not a unix time"},
		{[]string{"hadown", "-e", "1e300", "web"}, 2, "is not a unix time the spool can hold"},
		{[]string{"hadown", "-P", "8080", "all"}, 2, "covers every port"},
		{[]string{"haup", "-P", "8080", "all"}, 2, "covers every port"},
		{[]string{"hadown", "../etc"}, 2, "must not start with '.'"},
		{[]string{"hadown", ".x"}, 2, "must not start with '.'"},
		{[]string{"hadown", "a/b"}, 2, "only letters"},
		{[]string{"hadown", ""}, 2, "empty"},
		{[]string{"hadown", strings.Repeat("a", 200)}, 2, "at most 128"},
		{[]string{"hadown", "web", "../etc"}, 2, "must not start with '.'"},
		{[]string{"hadown"}, 2, "expected"},
		{[]string{"hadown", "--bogus", "web"}, 2, "unknown flag --bogus"},
		{[]string{"hadown", "--for", "soon", "web"}, 2, "not a duration"},
		{[]string{"hadown", "--for=-5m", "web"}, 2, "must be positive"},
		{[]string{"hadown", "--for", "1h", "-e", "1895500000", "web"}, 2, "can't be used together"},
		{[]string{"hadown", "-P", "70000", "web"}, 2, "invalid port"},
		{[]string{"hadown", "-P", "http", "web"}, 2, "service-port"},
		{[]string{"haup", "../etc"}, 2, "must not start with '.'"},
		{[]string{"hastatus", "a/b"}, 2, "only letters"},
		{[]string{"hastatus"}, 2, "expected"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := newRunner(t)
			res := r.run(tt.args[0], tt.args[1:]...)
			if res.code != tt.code || !strings.Contains(res.stderr, tt.errorHas) {
				t.Fatalf("got %+v; want exit %d and an error containing %q", res, tt.code, tt.errorHas)
			}
			if strings.Count(res.stderr, "\n") != 1 {
				t.Fatalf("error is not one line: %q", res.stderr)
			}
			if marks := r.marks(t); len(marks) != 0 {
				t.Fatalf("bad input wrote %v", marks)
			}
		})
	}
}

func TestDefaultReason(t *testing.T) {
	nonhumans := filepath.Join(t.TempDir(), "nonhumans")
	if err := os.WriteFile(nonhumans, []byte("# robots\ndeploybot\n  jenkins  # CI\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		vars     map[string]string
		code     int
		reason   string
		errorHas string
	}{
		{map[string]string{"SUDO_USER": "alice", "SSH_USER": "bob"}, 0, "alice", ""},
		{map[string]string{"SSH_USER": "bob"}, 0, "bob", ""},
		{map[string]string{"SUDO_USER": "jenkins"}, 1, "", "please use --reason to tell us who you really are"},
		{map[string]string{"SSH_USER": "deploybot"}, 1, "", "please use --reason"},
	}
	for _, tt := range tests {
		r := newRunner(t)
		r.vars = tt.vars
		res := r.run("hadown", "--nonhumans-file", nonhumans, "web")
		if res.code != tt.code || !strings.Contains(res.stderr, tt.errorHas) {
			t.Fatalf("vars %v: %+v", tt.vars, res)
		}
		if tt.code != 0 {
			if marks := r.marks(t); len(marks) != 0 {
				t.Fatalf("refusal wrote %v", marks)
			}
			continue
		}
		if m, _ := spool.New(r.root).Read("web", 0); m.Reason != tt.reason {
			t.Fatalf("vars %v: reason %q, want %q", tt.vars, m.Reason, tt.reason)
		}
	}
	r := newRunner(t)
	r.vars = map[string]string{"SUDO_USER": "jenkins"}
	if res := r.run("hadown", "--nonhumans-file", nonhumans, "-r", "ticket 42", "web"); res.code != 0 {
		t.Fatalf("an explicit reason must be accepted from a robot: %+v", res)
	}
}

func TestParseFriendlyDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"30m", 30 * time.Minute, true},
		{"2h", 2 * time.Hour, true},
		{"1d", 24 * time.Hour, true},
		{"1d12h", 36 * time.Hour, true},
		{"1h30m", 90 * time.Minute, true},
		{"1w", 7 * 24 * time.Hour, true},
		{"1.5h", 90 * time.Minute, true},
		{"500ms", 500 * time.Millisecond, true},
		{"0s", 0, false},
		{"-1h", 0, false},
		{"d", 0, false},
		{"1x", 0, false},
		{"", 0, false},
		{"99999999999d", 0, false},
	}
	for _, tt := range tests {
		got, err := parseFriendlyDuration(tt.in)
		if (err == nil) != tt.ok || (tt.ok && got != tt.want) {
			t.Errorf("parseFriendlyDuration(%q) = %v, %v", tt.in, got, err)
		}
	}
}

func command(dir, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(dir, name), args...)
	cmd.Env = append(os.Environ(), "SUDO_USER=tester")
	return cmd
}

func TestMultiCallNamesAsProcesses(t *testing.T) {
	dir := testbin.Dir(t)
	root := t.TempDir()
	out, err := command(dir, "hadown", "--spool-root", root, "-r", "kernel upgrade", "web").CombinedOutput()
	if err != nil {
		t.Fatalf("hadown: %v: %s", err, out)
	}
	cmd := command(dir, "hastatus", "--spool-root", root, "web")
	out, err = cmd.Output()
	if string(out) != "DOWN\tweb\tkernel upgrade\n" || cmd.ProcessState.ExitCode() != 1 {
		t.Fatalf("hastatus = %q, exit %d (%v)", out, cmd.ProcessState.ExitCode(), err)
	}
	if out, err := command(dir, "haup", "--spool-root", root, "web").CombinedOutput(); err != nil {
		t.Fatalf("haup: %v: %s", err, out)
	}
	if out, err := command(dir, "hastatus", "--spool-root", root, "web").Output(); err != nil || string(out) != "UP\tweb\n" {
		t.Fatalf("hastatus after haup = %q, %v", out, err)
	}
	if out, err := command(dir, "hashowdowned", "--spool-root", root).Output(); err != nil || len(out) != 0 {
		t.Fatalf("hashowdowned = %q, %v", out, err)
	}
}

// Fifty processes down and up overlapping names at once. Whatever order they run in, every
// final file must be one complete mark that one of them wrote (no tearing, no mixing), an absent
// file must be one some process removed, and no temp file may be left behind.
func TestConcurrentProcesses(t *testing.T) {
	dir := testbin.Dir(t)
	root := t.TempDir()
	services := []string{"web", "api", "db"}
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var cmd *exec.Cmd
			if i%4 == 3 {
				cmd = command(dir, "haup", "--spool-root", root, services[i%3], services[(i+1)%3])
			} else {
				cmd = command(dir, "hadown", "--spool-root", root, "-r", fmt.Sprintf("writer %d", i), services[i%3], services[(i+1)%3])
			}
			if out, err := cmd.CombinedOutput(); err != nil {
				errs <- fmt.Errorf("process %d: %v: %s", i, err, out)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, name := range spoolEntries(t, root) {
		if strings.HasPrefix(name, ".hacheck-tmp-") {
			t.Errorf("temp file left behind: %s", name)
		}
	}
	for _, svc := range services {
		data, err := os.ReadFile(filepath.Join(root, svc))
		if os.IsNotExist(err) {
			continue // some haup ran last on it
		}
		var content struct {
			Reason   string   `json:"reason"`
			Creation *float64 `json:"creation"`
		}
		if err := json.Unmarshal(data, &content); err != nil || content.Creation == nil {
			t.Fatalf("%s is torn: %q (%v)", svc, data, err)
		}
		var writer int
		if _, err := fmt.Sscanf(content.Reason, "writer %d", &writer); err != nil || writer%4 == 3 ||
			(services[writer%3] != svc && services[(writer+1)%3] != svc) {
			t.Fatalf("%s holds %q, which no process wrote to it", svc, content.Reason)
		}
	}
}

// Missing access to the spool is exit 2 with the path and the access named. Tests run as root,
// where permission bits do not apply, so the command runs as nobody.
func TestSpoolAccessErrors(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the command as another user")
	}
	self := filepath.Join(testbin.Dir(t), "hacheck")
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} { // t.TempDir's folders are 0700
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "hadown")
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "spool")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	private := filepath.Join(dir, "private")
	if err := os.Mkdir(private, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name     string
		args     []string
		errorHas string
	}{
		{"hadown", []string{"--spool-root", root, "-r", "x", "web"}, "cannot write " + root + ": "},
		{"hadown", []string{"--spool-root", filepath.Join(root, "sub"), "-r", "x", "web"}, "cannot create " + filepath.Join(root, "sub")},
		{"hacheck", []string{"serve", "--spool-root", filepath.Join(root, "sub"), "-p", "0"}, "cannot create " + filepath.Join(root, "sub")},
		// Not "DOWN" for everything: a user who cannot read the spool is told so.
		{"hastatus", []string{"--spool-root", private, "web"}, "cannot read " + private},
		{"hashowdowned", []string{"--spool-root", private}, "cannot read " + private},
	} {
		cmd := exec.Command(bin, tt.args...)
		cmd.Args[0] = tt.name
		cmd.Env = append(os.Environ(), "SUDO_USER=tester")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); cmd.ProcessState == nil {
			t.Fatalf("cannot start %s as nobody: %v", bin, err)
		}
		if code := cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(stderr.String(), tt.errorHas) || !strings.Contains(stderr.String(), "permission denied") {
			t.Errorf("%s %v as nobody: exit %d, %q; want exit 2 naming %q", tt.name, tt.args, code, stderr.String(), tt.errorHas)
		}
	}
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Fatalf("refused writes left %v", entries)
	}
}

func TestHalistReadsRecent(t *testing.T) {
	store := spool.New(t.TempDir())
	srv := server.New(config.Default(), server.Options{Store: store, Version: "test", Logger: zerolog.Nop()})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, []net.Listener{server.Wrap(l)}, 5*time.Second) }()
	t.Cleanup(func() { cancel(); <-done })
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	for _, svc := range []string{"web", "api"} {
		resp, err := http.Get("http://" + l.Addr().String() + "/spool/" + svc + "/0/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	var stdout, stderr bytes.Buffer
	e := &Env{Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }, Now: time.Now}
	if code := run("halist", []string{"-p", port}, e); code != 0 {
		t.Fatalf("halist: exit %d: %s", code, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "api\tcode=200\tfrom=127.0.0.1\t") || !strings.HasPrefix(lines[1], "web\t") {
		t.Fatalf("halist = %q", stdout.String())
	}
	stdout.Reset()
	if code := run("hacheck", []string{"list", "-p", port, "--json"}, e); code != 0 || !strings.Contains(stdout.String(), `"seen_services":[["api",`) {
		t.Fatalf("list --json: exit %d %q", code, stdout.String())
	}
	l2, _ := net.Listen("tcp", "127.0.0.1:0")
	closedPort := strconv.Itoa(l2.Addr().(*net.TCPAddr).Port)
	l2.Close()
	stderr.Reset()
	if code := run("halist", []string{"-p", closedPort}, e); code != 1 || strings.Count(stderr.String(), "\n") != 1 {
		t.Fatalf("halist with no server: exit %d %q; want a one-line error and exit 1", code, stderr.String())
	}
}

// The real process: SIGHUP reloads the config file and SIGTERM stops it gracefully (exit 0).
func TestServeSignals(t *testing.T) {
	dir := testbin.Dir(t)
	config := filepath.Join(t.TempDir(), "hacheck.yml")
	os.WriteFile(config, []byte("cache_time: 5\n"), 0o600)
	cmd := command(dir, "hacheck", "serve", "-c", config, "-p", "0", "-B", "127.0.0.1", "--spool-root", t.TempDir())
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := bufio.NewScanner(stderr)
	// waitLog reads the JSON log until a line with the message, returning it.
	waitLog := func(message string) map[string]any {
		t.Helper()
		for lines.Scan() {
			var entry map[string]any
			if json.Unmarshal(lines.Bytes(), &entry) == nil && entry["message"] == message {
				return entry
			}
		}
		t.Fatalf("log ended before %q", message)
		return nil
	}
	serving := waitLog("hacheck serving")
	addr := serving["listen"].([]any)[0].(string)
	resp, err := http.Get("http://" + addr + "/spool/web/0/")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("serving: %v %v", resp, err)
	}
	resp.Body.Close()

	os.WriteFile(config, []byte("cache_time: 7\n"), 0o600)
	cmd.Process.Signal(syscall.SIGHUP)
	if entry := waitLog("config reloaded"); entry["cache_time_seconds"] != 7.0 {
		t.Fatalf("reload applied %v, want cache_time 7", entry)
	}
	os.WriteFile(config, []byte("cache_time: -1\n"), 0o600)
	cmd.Process.Signal(syscall.SIGHUP)
	if entry := waitLog("config reload failed; keeping the running configuration"); !strings.Contains(fmt.Sprint(entry["error"]), "cache_time") {
		t.Fatalf("failed reload logged %v", entry)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	waitLog("hacheck stopped")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
}
