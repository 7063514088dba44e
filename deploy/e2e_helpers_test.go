// Package deploy_test runs hacheck end to end: the real binary as a subprocess, checked by a
// real HAProxy and scraped by a real Prometheus, driven by the real hadown/haup commands.
package deploy_test

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/hacheck/hacheck/internal/testbin"
)

// pollEvery is how often waitFor re-evaluates a condition.
const pollEvery = 50 * time.Millisecond

func TestMain(m *testing.M) { testbin.Main(m) }

// hacheckBin builds the real hacheck binary (once) and returns the directory holding it and
// the haup/hadown/... symlinks to it.
func hacheckBin(t *testing.T) string { return testbin.Dir(t) }

// requireTool finds an external program: missing, it fails the test in CI and skips it elsewhere.
func requireTool(t *testing.T, name string, fallbacks ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range fallbacks {
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	msg := fmt.Sprintf("%s not found (Debian: apt-get install %s)", name, name)
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// freePort returns a loopback TCP port that was free a moment ago. Callers retry when another
// process wins the race for it.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitFor polls cond every 50ms until it reports true or timeout passes; then it fails the
// test with what, and the state cond last described.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (ok bool, state string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last observed:\n%s", timeout, what, state)
		}
		time.Sleep(pollEvery)
	}
}

// syncBuffer collects a subprocess's output for failure messages.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// tail is the end of s, enough to explain a failure without flooding the log.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "...\n" + s[len(s)-n:]
}

// proc is a subprocess the test owns: it is stopped at cleanup whatever happens.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{} // closed when the process has exited and been reaped
	err  error         // Wait's result, valid after done
}

// startProc starts path with args; env, if not nil, is its whole environment.
func startProc(t *testing.T, name string, env []string, path string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(path, args...)
	p.cmd.Env = env
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	p.cmd.SysProcAttr = childAttr()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(t, 10*time.Second)
		if strings.Contains(p.out.String(), "WARNING: DATA RACE") {
			t.Errorf("%s (pid %d) reported a data race", p.name, p.cmd.Process.Pid)
		}
		if t.Failed() {
			t.Logf("%s output (pid %d):\n%s", p.name, p.cmd.Process.Pid, tail(p.out.String(), 6000))
		}
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to grace for the exit, then kills. It returns how long the
// process took to exit.
func (p *proc) stop(t *testing.T, grace time.Duration) time.Duration {
	start := time.Now()
	if p.exited() {
		return 0
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return time.Since(start)
	case <-time.After(grace):
	}
	t.Errorf("%s (pid %d) did not exit within %v of SIGTERM; killing it", p.name, p.cmd.Process.Pid, grace)
	_ = p.cmd.Process.Kill()
	<-p.done
	return time.Since(start)
}

// hacheckEnv is the environment of hacheck processes. A -race binary sleeps a second before
// exiting (GORACE atexit_sleep_ms, default 1000), which would make every hadown/haup take a
// second and stretch a restart by as much; the real binary exits at once.
func hacheckEnv() []string {
	return append(os.Environ(), "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
}

// hacheck is a running `hacheck serve` on 127.0.0.1.
type hacheck struct {
	*proc
	bin, spoolRoot, config string
	port                   int
}

// writeHacheckConfig writes a config with a short cache and timeout, so HAProxy sees changes
// of the service itself within about a second, followed by the extra lines a test needs.
func writeHacheckConfig(t *testing.T, dir string, extra ...string) string {
	t.Helper()
	path := filepath.Join(dir, "hacheck.yml")
	cfg := "cache_time: 1\ncheck_timeout: 1\nlog_path: stderr\n" + strings.Join(extra, "")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// startHacheck runs hacheck on a free port (port 0) or on the given one, and waits until it
// answers /status. On a free port it retries when another process took the port first.
func startHacheck(t *testing.T, bin, spoolRoot, config string, port int) *hacheck {
	t.Helper()
	attempts := 1
	if port == 0 {
		attempts = 5
	}
	var lastErr error
	for range attempts {
		p := port
		if p == 0 {
			p = freePort(t)
		}
		h := &hacheck{bin: bin, spoolRoot: spoolRoot, config: config, port: p}
		h.proc = startProc(t, "hacheck", hacheckEnv(), filepath.Join(bin, "hacheck"),
			"serve", "-B", "127.0.0.1", "-p", strconv.Itoa(p), "--spool-root", spoolRoot, "-c", config)
		if lastErr = h.waitReady(10 * time.Second); lastErr == nil {
			return h
		}
		h.stop(t, 5*time.Second)
		if !strings.Contains(h.out.String(), "address already in use") {
			break
		}
	}
	t.Fatalf("hacheck did not become ready: %v", lastErr)
	return nil
}

// waitReady polls GET /status until it answers 200 with hacheck's JSON, the process exits, or
// timeout passes.
func (h *hacheck) waitReady(timeout time.Duration) error {
	client := &http.Client{Timeout: 500 * time.Millisecond}
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if h.exited() {
			return fmt.Errorf("hacheck exited (%v): %s", h.err, tail(h.out.String(), 2000))
		}
		resp, err := client.Get(h.url("/status"))
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && bytes.Contains(body, []byte(`"uptime"`)) {
				return nil
			}
			err = fmt.Errorf("GET /status: %s %q", resp.Status, body)
		}
		last = err
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("not ready after %v: %v", timeout, last)
}

func (h *hacheck) url(path string) string {
	return "http://127.0.0.1:" + strconv.Itoa(h.port) + path
}

// cli runs one of the multi-call commands (hadown, haup, ...) against h's spool and returns
// its standard output; a non-zero exit fails the test.
func (h *hacheck) cli(t *testing.T, name string, args ...string) string {
	t.Helper()
	args = append([]string{"--spool-root", h.spoolRoot}, args...)
	cmd := exec.Command(filepath.Join(h.bin, name), args...)
	cmd.Env = hacheckEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\nstdout: %s\nstderr: %s", name, strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// haproxy is a running HAProxy with an admin stats socket.
type haproxy struct {
	*proc
	sock string
}

// startHAProxy writes the config built by render (given the admin socket path and a free
// frontend port) and runs haproxy in the foreground, retrying with another port if the
// frontend's port was taken meanwhile. It returns once the stats socket answers.
func startHAProxy(t *testing.T, bin string, render func(sock string, frontPort int) string) (*haproxy, int) {
	t.Helper()
	dir := t.TempDir()
	sock := filepath.Join(dir, "admin.sock")
	if len(sock) > 100 { // sun_path holds 108 bytes
		short, err := os.MkdirTemp("/tmp", "hae2e")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(short) })
		sock = filepath.Join(short, "admin.sock")
	}
	cfgPath := filepath.Join(dir, "haproxy.cfg")
	for attempt := 0; ; attempt++ {
		front := freePort(t)
		if err := os.WriteFile(cfgPath, []byte(render(sock, front)), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bin, "-c", "-q", "-f", cfgPath).CombinedOutput(); err != nil {
			t.Fatalf("haproxy -c rejects the generated config: %v\n%s\nconfig:\n%s", err, out, render(sock, front))
		}
		h := &haproxy{sock: sock}
		h.proc = startProc(t, "haproxy", nil, bin, "-db", "-f", cfgPath)
		var err error
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) && !h.exited() {
			if _, err = h.stats(); err == nil {
				return h, front
			}
			time.Sleep(20 * time.Millisecond)
		}
		out := h.out.String()
		h.stop(t, 5*time.Second)
		if attempt < 4 && strings.Contains(out, "cannot bind") {
			continue
		}
		t.Fatalf("haproxy did not start (last stats error: %v):\n%s", err, tail(out, 4000))
	}
}

// haproxyHead is the global and defaults sections every test's HAProxy config starts with: an
// admin socket for reading servers' states, and short timeouts. .Node names the load balancer
// where a test tells two apart; .Timeout, if set, is the client and server timeout (for a test
// that holds a session open).
const haproxyHead = `
global
{{- with .Node}}
    node {{.}}
{{- end}}
    stats socket {{.Sock}} mode 600 level admin
    stats timeout 10s

defaults
    mode http
    timeout connect 1s
    timeout client {{or .Timeout "5s"}}
    timeout server {{or .Timeout "5s"}}
    timeout check 1s
`

// haproxyConfig is a test's HAProxy config: haproxyHead, then the test's frontends and backends.
func haproxyConfig(body string) *template.Template {
	return template.Must(template.New("haproxy.cfg").Parse(haproxyHead + body))
}

// startHAProxyConfig runs HAProxy with tmpl executed on data plus the admin socket (.Sock) and
// the frontend's port (.Front).
func startHAProxyConfig(t *testing.T, bin string, tmpl *template.Template, data map[string]any) (*haproxy, int) {
	t.Helper()
	return startHAProxy(t, bin, func(sock string, front int) string {
		data["Sock"], data["Front"] = sock, front
		var b strings.Builder
		if err := tmpl.Execute(&b, data); err != nil {
			t.Fatal(err)
		}
		return b.String()
	})
}

// server is one row of `show stat`: columns by name.
type server map[string]string

func (s server) status() string { return s["status"] }

// checkStatus is the last check's result, without the "* " HAProxy puts in front while the
// next check is running.
func (s server) checkStatus() string { return strings.TrimPrefix(s["check_status"], "* ") }

// checking: a check is running; HAProxy then still shows the last check_status, but has reset
// check_code to 0.
func (s server) checking() bool { return strings.HasPrefix(s["check_status"], "* ") }

func (s server) String() string {
	return fmt.Sprintf("%s/%s status=%q check=%q/%s last_chk=%q chkfail=%s chkdown=%s",
		s["pxname"], s["svname"], s.status(), s["check_status"], s["check_code"], s["last_chk"], s["chkfail"], s["chkdown"])
}

// up: UP (not going down) and the last check really went through hacheck and passed at layer
// 7 (with a 200, unless a check is running and the code is not shown).
func (s server) up() bool {
	return s.status() == "UP" && s.checkStatus() == "L7OK" && (s["check_code"] == "200" || s.checking())
}

// downBy: DOWN, and the last check got this HTTP code from hacheck (not a connection failure).
// While a check is running the code is not shown: then it is not (yet) known to be code.
func (s server) downBy(code string) bool {
	return s.status() == "DOWN" && s.checkStatus() == "L7STS" && s["check_code"] == code
}

func (s server) num(col string) int {
	n, _ := strconv.Atoi(s[col])
	return n
}

// stats maps "backend/server" to its row.
type stats map[string]server

func (st stats) String() string {
	keys := make([]string, 0, len(st))
	for k := range st {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "  %v\n", st[k])
	}
	return b.String()
}

// stats reads every server's state over the admin socket (`show stat -1 4 -1`).
func (h *haproxy) stats() (stats, error) {
	conn, err := net.DialTimeout("unix", h.sock, time.Second)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(conn, "show stat -1 4 -1\n"); err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(conn)
	if err != nil {
		return nil, err
	}
	text, ok := strings.CutPrefix(string(raw), "# ")
	if !ok {
		return nil, fmt.Errorf("show stat: unexpected answer %q", tail(string(raw), 300))
	}
	r := csv.NewReader(strings.NewReader(text))
	r.FieldsPerRecord = -1
	records, err := r.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("show stat: %w", err)
	}
	if len(records) < 2 {
		return nil, errors.New("show stat: no servers")
	}
	header := records[0]
	out := stats{}
	for _, rec := range records[1:] {
		row := server{}
		for i, v := range rec {
			if i < len(header) && header[i] != "" {
				row[header[i]] = v
			}
		}
		out[row["pxname"]+"/"+row["svname"]] = row
	}
	return out, nil
}

// mustStats is stats for a test that cannot go on without them.
func (h *haproxy) mustStats(t *testing.T) stats {
	t.Helper()
	st, err := h.stats()
	if err != nil {
		t.Fatalf("read haproxy stats: %v", err)
	}
	return st
}

// waitState polls the stats until cond holds for them.
func (h *haproxy) waitState(t *testing.T, timeout time.Duration, what string, cond func(stats) bool) stats {
	t.Helper()
	var last stats
	waitFor(t, timeout, what, func() (bool, string) {
		st, err := h.stats()
		if err != nil {
			return false, "stats: " + err.Error()
		}
		last = st
		return cond(st), st.String()
	})
	return last
}

// holdState samples the stats for the whole window and fails on the first sample where cond
// does not hold: an assertion that something stays true while checks keep running (not a
// synchronisation sleep).
func (h *haproxy) holdState(t *testing.T, window time.Duration, what string, cond func(stats) bool) {
	t.Helper()
	end := time.Now().Add(window)
	for time.Now().Before(end) {
		st, err := h.stats()
		if err != nil {
			t.Fatalf("read haproxy stats: %v", err)
		}
		if !cond(st) {
			t.Fatalf("%s stopped holding:\n%s", what, st)
		}
		time.Sleep(pollEvery)
	}
}
