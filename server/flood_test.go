package server

// The flood harness: the built binary on loopback, sent 100,000 distinct service names and then
// 30,000 distinct query strings, with its peak RSS, what /metrics, /status/count and /recent
// weigh at their caps, and how many upstream checks a new key costs with the cache full. It is a
// measurement (docs/performance.md, "Floods"), so it runs only when asked:
//
//	HACHECK_FLOOD=1 go test -run TestFloodHarness -v -timeout 10m ./server/
//
// HACHECK_FLOOD_CONNS (default 64) is how many keep-alive connections send the flood;
// HACHECK_FLOOD_MAX_RSS_MIB, when set, fails the run if the peak RSS went above it (.ci/run sets
// 64: the bound the memory limit exists to keep under any flood);
// HACHECK_FLOOD_CONFIG is appended to the server's config (e.g. "memory_limit: off"). After the
// service names and query strings come two floods of the load-balancer tracker: 32,000 check
// requests whose send-state header has an 11 KB node name, and 100,000 invented reporters with
// 128-byte names. The
// flood is the worst case for memory: the upstream answers 4 KiB (the most of a body a check
// keeps), service names are 128 bytes (the longest valid) and query strings 1,000 bytes (just
// under the cap on path and query).

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestFloodHarness(t *testing.T) {
	if os.Getenv("HACHECK_FLOOD") != "1" {
		t.Skip("a memory measurement; run with HACHECK_FLOOD=1 (see docs/performance.md, Floods)")
	}
	conns := envInt(t, "HACHECK_FLOOD_CONNS", 64)
	bin := filepath.Join(t.TempDir(), "hacheck")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/hacheck/hacheck").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	var mu sync.Mutex
	hitsByPath := map[string]int{}
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/fresh") {
			mu.Lock()
			hitsByPath[r.URL.Path]++
			mu.Unlock()
			time.Sleep(100 * time.Millisecond) // a service that takes a while, not synchronisation
		}
		io.WriteString(w, floodBody)
	}))
	defer backend.Close()
	port := strconv.Itoa(backend.Listener.Addr().(*net.TCPAddr).Port)

	config := filepath.Join(t.TempDir(), "hacheck.yml")
	if err := os.WriteFile(config, []byte("log_path: stderr\n"+os.Getenv("HACHECK_FLOOD_CONFIG")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	proc := startProcess(t, bin, "serve", "-c", config, "--spool-root", t.TempDir(), "-B", "127.0.0.1", "-p", portOf(addr))
	pid := proc.Process.Pid
	base := "http://" + addr
	waitHTTP(t, base+"/status")

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}}
	get := func(path string, header ...string) (int, []byte) {
		req, err := http.NewRequest(http.MethodGet, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(header) > 0 {
			req.Header.Set("X-Haproxy-Server-State", header[0])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Errorf("GET %s: %v", path, err)
			return 0, nil
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Errorf("GET %s: %v", path, err)
		}
		return resp.StatusCode, body
	}
	get("/http/web/" + port + "/health")
	startRSS, _ := processMemory(t, pid)

	// Peak RSS is the kernel's high-water mark; the samples only show the shape over time.
	var peakSeen atomic.Int64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stopSampling:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if rss, _ := processMemory(t, pid); rss > peakSeen.Load() {
				peakSeen.Store(rss)
			}
		}
	}()

	flood := func(n int, path func(i int) string) time.Duration {
		start := time.Now()
		var next atomic.Int64
		var wg sync.WaitGroup
		for range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
					get(path(i))
				}
			}()
		}
		wg.Wait()
		return time.Since(start)
	}
	names := flood(100_000, func(i int) string { return floodName(i, port) })
	_, hwmNames := processMemory(t, pid)
	queries := flood(30_000, func(i int) string { return floodQuery(i, port) })
	_, hwm := processMemory(t, pid)
	floodLB := func(n int, header func(i int) string) time.Duration {
		start := time.Now()
		var next atomic.Int64
		var wg sync.WaitGroup
		for range conns {
			wg.Go(func() {
				for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
					get(fmt.Sprintf("/spool/lb%d/0/", i%2000), header(i))
				}
			})
		}
		wg.Wait()
		return time.Since(start)
	}
	huge := strings.Repeat("n", 11<<10)
	hugeNodes := floodLB(32_000, func(i int) string {
		return fmt.Sprintf("UP; address=127.0.0.1; port=80; name=be/s; node=%05d%s; weight=1/2; scur=0/0; qcur=0", i, huge)
	})
	_, hwmHuge := processMemory(t, pid)
	name := func(i int) string { return fmt.Sprintf("%0128d", i) }
	reporters := floodLB(100_000, func(i int) string {
		return "UP; address=127.0.0.1; port=80; name=" + name(i) + "/" + name(i) + "; node=" + name(i) + "; weight=1/2; scur=0/0; qcur=0"
	})
	_, hwmReporters := processMemory(t, pid)

	// With the cache full of the flood's keys: 100 concurrent requests for each of 10 new keys.
	var wg sync.WaitGroup
	for k := range 10 {
		for range 100 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				get(fmt.Sprintf("/http/new%d/%s/fresh%d", k, port, k))
			}()
		}
	}
	wg.Wait()
	mu.Lock()
	var freshChecks int
	for _, n := range hitsByPath {
		freshChecks += n
	}
	mu.Unlock()

	measure := func(path string) string {
		start := time.Now()
		code, body := get(path)
		return fmt.Sprintf("%s %d, %.0f KiB in %s", path, code, float64(len(body))/1024, fmtDur(time.Since(start)))
	}
	endpoints := []string{measure("/metrics"), measure("/status/count"), measure("/recent"), measure("/status")}
	close(stopSampling)
	<-sampled
	afterRSS, _ := processMemory(t, pid)

	t.Logf("flood over %d keep-alive connections, default config (cache_time 10 s) and %q", conns, os.Getenv("HACHECK_FLOOD_CONFIG"))
	t.Logf("RSS at start %.0f MiB; peak %.0f MiB after 100,000 service names (%s), %.0f MiB after 30,000 query strings too (%s); %.0f MiB at the end",
		mib(startRSS), mib(hwmNames), names.Round(time.Millisecond), mib(hwm), queries.Round(time.Millisecond), mib(afterRSS))
	t.Logf("peak %.0f MiB after 32,000 send-state headers with 11 KB node names (%s), %.0f MiB after 100,000 invented reporters (%s)",
		mib(hwmHuge), hugeNodes.Round(time.Millisecond), mib(hwmReporters), reporters.Round(time.Millisecond))
	t.Logf("highest RSS sampled every 50 ms: %.0f MiB", mib(peakSeen.Load()))
	t.Logf("full cache: 100 concurrent requests for each of 10 new keys made %d upstream checks (%.1f per key)", freshChecks, float64(freshChecks)/10)
	for _, e := range endpoints {
		t.Log(e)
	}
	if os.Getenv("HACHECK_FLOOD_MAX_RSS_MIB") != "" {
		if limit := envInt(t, "HACHECK_FLOOD_MAX_RSS_MIB", 0); mib(hwmReporters) > float64(limit) {
			t.Errorf("peak RSS %.0f MiB under the floods, want at most %d MiB", mib(hwmReporters), limit)
		}
	}
}

func mib(kib int64) float64 { return float64(kib) / 1024 }

// floodBody is what the flood's upstream answers: as much as a check keeps of a body.
var floodBody = strings.Repeat("x", 4096)

// floodName is the i-th path of the flood of service names: 128-byte names.
func floodName(i int, port string) string {
	return fmt.Sprintf("/http/%0128d/%s/health", i, port)
}

// floodQuery is the i-th path of the flood of query strings: 1,000 bytes of query each.
func floodQuery(i int, port string) string {
	return fmt.Sprintf("/http/web/%s/health?q=%0998d", port, i)
}

// TestFloodProfile sends the same flood to the real handler served in this process and writes
// heap profiles after each half (HACHECK_FLOOD_PROFILE=<prefix>: <prefix>.names.pprof,
// <prefix>.queries.pprof), to see what grows: `go tool pprof -sample_index=inuse_space`.
func TestFloodProfile(t *testing.T) {
	prefix := os.Getenv("HACHECK_FLOOD_PROFILE")
	if prefix == "" {
		t.Skip("a heap profile of the flood; run with HACHECK_FLOOD_PROFILE=<file prefix>")
	}
	conns := envInt(t, "HACHECK_FLOOD_CONNS", 64)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, floodBody) }))
	defer backend.Close()
	port := strconv.Itoa(backend.Listener.Addr().(*net.TCPAddr).Port)
	srv := startServer(t, nil)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}}
	flood := func(n int, path func(i int) string) {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := int(next.Add(1)) - 1; i < n; i = int(next.Add(1)) - 1 {
					resp, err := client.Get(srv.base + path(i))
					if err != nil {
						t.Errorf("GET: %v", err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}()
		}
		wg.Wait()
	}
	profile := func(name string) {
		f, err := os.Create(prefix + "." + name + ".pprof")
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
			t.Fatal(err)
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		t.Logf("%s: heap in use %.0f MiB, heap from the OS %.0f MiB, stacks %.0f MiB, total from the OS %.0f MiB",
			name, float64(ms.HeapInuse)/(1<<20), float64(ms.HeapSys)/(1<<20), float64(ms.StackSys)/(1<<20), float64(ms.Sys)/(1<<20))
	}
	flood(100_000, func(i int) string { return floodName(i, port) })
	profile("names")
	flood(30_000, func(i int) string { return floodQuery(i, port) })
	profile("queries")
}
