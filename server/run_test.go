package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hacheck/hacheck/config"
)

// runServer starts Run with the given config file on two ephemeral ports (every address) and
// returns the listeners' ports, the reload trigger and a stop function returning Run's error.
func runServer(t *testing.T, configPath string) (ports []int, reload chan<- struct{}, stop func() error) {
	t.Helper()
	reloads := make(chan struct{})
	ready := make(chan []net.Listener, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, RunOptions{
			ConfigPath: configPath,
			SpoolRoot:  filepath.Join(t.TempDir(), "spool"),
			Ports:      []int{0, 0},
			Version:    "test",
			Reload:     reloads,
			Ready:      func(ls []net.Listener) { ready <- ls },
		}, io.Discard)
	}()
	select {
	case ls := <-ready:
		for _, l := range ls {
			ports = append(ports, l.Addr().(*net.TCPAddr).Port)
		}
	case err := <-done:
		cancel()
		t.Fatalf("Run returned before serving: %v", err)
	}
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		return <-done
	}
	t.Cleanup(func() { stop() })
	return ports, reloads, stop
}

func httpGet(t *testing.T, url string, header ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestRunServesEveryPortOnIPv4AndIPv6(t *testing.T) {
	ports, _, stop := runServer(t, "")
	if len(ports) != 2 || ports[0] == ports[1] {
		t.Fatalf("ports %v", ports)
	}
	for _, port := range ports {
		for _, host := range []string{"127.0.0.1", "[::1]"} {
			if code, _ := httpGet(t, fmt.Sprintf("http://%s:%d/spool/x/0/", host, port)); code != 200 {
				t.Errorf("%s:%d answered %d", host, port, code)
			}
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
	if _, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(ports[0])); err == nil {
		t.Fatal("still listening after stop")
	}
}

// SIGHUP (here: a value on the reload channel) applies a changed file; a broken file leaves
// the running configuration in place and says so in /metrics.
func TestRunReloadsConfig(t *testing.T) {
	var seenHeader sync.Map
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seenHeader.Store(r.URL.Path, r.Header.Get("X-Service"))
	}))
	defer backend.Close()
	backendPort := strconv.Itoa(backend.Listener.Addr().(*net.TCPAddr).Port)
	config := filepath.Join(t.TempDir(), "hacheck.yml")
	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(config, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("cache_time: 0\n")
	ports, reload, _ := runServer(t, config)
	base := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	check := func(path string) string {
		t.Helper()
		if code, body := httpGet(t, base+"/http/web/"+backendPort+path); code != 200 {
			t.Fatalf("check %s: %d %q", path, code, body)
		}
		v, _ := seenHeader.Load(path)
		return v.(string)
	}
	if got := check("/before"); got != "" {
		t.Fatalf("service-name header sent before it was configured: %q", got)
	}
	write("cache_time: 0\nservice_name_header: X-Service\n")
	reload <- struct{}{}
	reloaded := func(want string) {
		t.Helper()
		// The reload runs on Run's goroutine; the next metrics scrape after it says how it went.
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
			_, body := httpGet(t, base+"/metrics")
			if strings.Contains(body, "hacheck_config_last_reload_successful "+want) {
				return
			}
			runtimeYield()
		}
		t.Fatalf("reload never reported hacheck_config_last_reload_successful %s", want)
	}
	reloaded("1")
	if got := check("/after"); got != "web" {
		t.Fatalf("service-name header after reload: %q, want web", got)
	}
	write("cache_time: [broken\n")
	reload <- struct{}{}
	reloaded("0")
	if got := check("/after-broken"); got != "web" {
		t.Fatalf("a broken reload must keep the running config; header %q", got)
	}
}

// A reload that moves log_path closes the old file; stopping closes whichever file is in use
// then.
func TestRunReloadMovesTheLog(t *testing.T) {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		t.Skip("needs /proc/self/fd to see which files are open")
	}
	dir := t.TempDir()
	first, second := filepath.Join(dir, "first.log"), filepath.Join(dir, "second.log")
	cfg := filepath.Join(dir, "hacheck.yml")
	if err := os.WriteFile(cfg, []byte("log_path: "+first+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, reload, stop := runServer(t, cfg)
	if n := openFiles(t, first); n != 1 {
		t.Fatalf("%s open %d times while in use, want 1", first, n)
	}
	if err := os.WriteFile(cfg, []byte("log_path: "+second+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reload <- struct{}{}
	// hacheck_config_last_reload_successful is already 1 before the reload (the start counts
	// as a load), so it cannot tell that the reload ran: wait for its effect instead.
	for deadline := time.Now().Add(5 * time.Second); ; runtimeYield() {
		n, m := openFiles(t, first), openFiles(t, second)
		if n == 0 && m == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("5s after the reload: %s open %d times (want 0), %s open %d times (want 1)", first, n, second, m)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := openFiles(t, second); n != 0 {
		t.Fatalf("%s still open %d times after Run returned", second, n)
	}
}

// openFiles counts this process's descriptors open on path.
func openFiles(t *testing.T, path string) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && target == path {
			n++
		}
	}
	return n
}

func TestRunRefusesBadConfig(t *testing.T) {
	config := filepath.Join(t.TempDir(), "bad.yml")
	os.WriteFile(config, []byte("check_timeout: 0\n"), 0o600)
	err := Run(context.Background(), RunOptions{ConfigPath: config, SpoolRoot: t.TempDir(), Ports: []int{0}}, io.Discard)
	var cfgErr *ConfigError
	if !asConfigError(err, &cfgErr) || !strings.Contains(err.Error(), "check_timeout") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Run with a bad config = %v; want a one-line ConfigError naming check_timeout", err)
	}
}

// A hundred concurrent HAProxy checks of one cold key, against a service that takes its time:
// one upstream check, and all hundred get its answer.
func TestConcurrentColdChecksMakeOneUpstreamCheck(t *testing.T) {
	release := make(chan struct{})
	var upstream sync.WaitGroup
	hits := 0
	var mu sync.Mutex
	port, _ := backendPort(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits++
		mu.Unlock()
		<-release
		io.WriteString(w, "slow but fine")
	})
	ts := startServer(t, nil)
	codes := make(chan int, 100)
	for range 100 {
		upstream.Add(1)
		go func() {
			defer upstream.Done()
			code, _, _ := ts.get(t, "/http/web/"+port+"/health")
			codes <- code
		}()
	}
	for ts.Pipeline().Cache().Stats().Gets < 100 {
		runtimeYield()
	}
	close(release)
	upstream.Wait()
	close(codes)
	for code := range codes {
		if code != 200 {
			t.Fatalf("a coalesced request got %d", code)
		}
	}
	if hits != 1 {
		t.Fatalf("100 concurrent cold checks made %d upstream checks, want 1", hits)
	}
}

// Client-invented service names cannot grow /status/count or /recent past the caps.
func TestStatusCountsBounded(t *testing.T) {
	ts := startServer(t, func(c *config.Config) { c.MaxServices = 10 })
	for i := range 50 {
		ts.get(t, "/spool/svc"+strconv.Itoa(i)+"/0/")
	}
	_, body, _ := ts.get(t, "/status/count")
	var counts struct {
		ServiceAccessCounts map[string]map[string]int `json:"service_access_counts"`
	}
	if err := json.Unmarshal([]byte(body), &counts); err != nil {
		t.Fatal(err)
	}
	if n := len(counts.ServiceAccessCounts); n != 11 || counts.ServiceAccessCounts["other"]["127.0.0.1"] != 40 {
		t.Fatalf("/status/count has %d services (want 10 + other with 40): %s", n, body)
	}
	_, body, _ = ts.get(t, "/metrics")
	if !strings.Contains(body, `hacheck_label_overflow_total{label="service"} 40`) {
		t.Fatal("overflow not counted in /metrics")
	}
}

func runtimeYield() { runtime.Gosched() }

func asConfigError(err error, target **ConfigError) bool { return errors.As(err, target) }

// Started without -p, the server listens on the config file's port, the one the CLI reads to
// find it.
func TestRunListensOnTheConfigsPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cfg := filepath.Join(t.TempDir(), "config.yml")
	if err := os.WriteFile(cfg, []byte("port: "+strconv.Itoa(port)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ready := make(chan []net.Listener, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, RunOptions{ConfigPath: cfg, SpoolRoot: t.TempDir(), BindAddress: "127.0.0.1", Version: "test",
			Ready: func(ls []net.Listener) { ready <- ls }}, io.Discard)
	}()
	defer func() { cancel(); <-done }()
	select {
	case ls := <-ready:
		if len(ls) != 1 || ls[0].Addr().(*net.TCPAddr).Port != port {
			t.Fatalf("listening on %v, want port %d only", ls[0].Addr(), port)
		}
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
}

// TestRunSetsMemoryLimit: the server sets the runtime's soft memory limit from memory_limit at
// start and on reload.
func TestRunSetsMemoryLimit(t *testing.T) {
	if os.Getenv("GOMEMLIMIT") != "" {
		t.Skip("GOMEMLIMIT is set, and wins over memory_limit")
	}
	was := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(was) })
	config := filepath.Join(t.TempDir(), "hacheck.yml")
	if err := os.WriteFile(config, []byte("memory_limit: 24MiB\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, reload, _ := runServer(t, config)
	if got := debug.SetMemoryLimit(-1); got != 24<<20 {
		t.Fatalf("memory limit while serving: %d, want 24 MiB", got)
	}
	if err := os.WriteFile(config, []byte("memory_limit: 32MiB\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	reload <- struct{}{}
	for deadline := time.Now().Add(5 * time.Second); debug.SetMemoryLimit(-1) != 32<<20; runtimeYield() {
		if time.Now().After(deadline) {
			t.Fatalf("after a reload to 32MiB the memory limit is %d", debug.SetMemoryLimit(-1))
		}
	}
}
