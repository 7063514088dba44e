package server

// The load harness: hacheck against a bare net/http server, same machine, same load,
// alternating runs. It is a measurement, not a pass/fail test, so it runs only when asked:
//
//	HACHECK_LOAD=1 go test -run TestLoadHarness -v -timeout 30m ./server/
//
// HACHECK_LOAD_SECONDS (default 5) is the length of one run; HACHECK_LOAD_ROUNDS (default 3)
// how many alternating rounds each case gets (medians are reported; a ratio is the median of
// the rounds' ratios); HACHECK_LOAD_REPORT a file to write the Markdown table to;
// HACHECK_LOAD_CASES a substring selecting cases by name; HACHECK_LOAD_COMPARE other hacheck
// binaries to run alongside in the same rounds, as name=path[,name=path...] (each gets its own
// rows, its ratio to bare and to this build), for an A/B measurement of a change.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type loadFigures struct {
	rps      float64
	p50, p99 time.Duration
	// cpuPerRequest is the server process's CPU time (user and system) over the run divided
	// by the requests it answered: what a request costs the server, next to what the closed
	// loop makes of it in requests/s. On loopback it includes kernel work done for the client
	// in the server's writes (delivering the response, waking the client).
	cpuPerRequest time.Duration
}

func TestLoadHarness(t *testing.T) {
	if os.Getenv("HACHECK_LOAD") != "1" {
		t.Skip("a load measurement; run with HACHECK_LOAD=1 (see docs/performance.md)")
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		t.Fatal("wrk not found: apt-get install -y wrk")
	}
	seconds := envInt(t, "HACHECK_LOAD_SECONDS", 5)
	rounds := envInt(t, "HACHECK_LOAD_ROUNDS", 3)
	bin := t.TempDir()
	for _, build := range [][]string{
		{"build", "-o", filepath.Join(bin, "hacheck"), "github.com/hacheck/hacheck"},
		{"build", "-o", filepath.Join(bin, "bare"), "./testdata/bare"},
	} {
		if out, err := exec.Command("go", build...).CombinedOutput(); err != nil {
			t.Fatalf("go %v: %v\n%s", build, err, out)
		}
	}

	var upstreamHits atomic.Int64
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstreamHits.Add(1)
		io.WriteString(w, "ok")
	}))
	defer backend.Close()
	backendPort := strconv.Itoa(backend.Listener.Addr().(*net.TCPAddr).Port)

	config := filepath.Join(t.TempDir(), "hacheck.yml")
	os.WriteFile(config, []byte("cache_time: 3600\ncheck_timeout: 5\nlog_path: stderr\n"), 0o644)
	hacheckAddr := freeAddr(t)
	hacheck := startProcess(t, filepath.Join(bin, "hacheck"), "serve", "-c", config, "--spool-root", t.TempDir(),
		"-B", "127.0.0.1", "-p", portOf(hacheckAddr))
	bareAddr := freeAddr(t)
	bare := startProcess(t, filepath.Join(bin, "bare"), bareAddr)
	waitHTTP(t, "http://"+hacheckAddr+"/status")
	waitHTTP(t, "http://"+bareAddr+"/")
	type contender struct {
		name, addr string
		pid        int
	}
	contenders := []contender{{"hacheck", hacheckAddr, hacheck.Process.Pid}}
	if compare := os.Getenv("HACHECK_LOAD_COMPARE"); compare != "" {
		for _, spec := range strings.Split(compare, ",") {
			name, path, ok := strings.Cut(spec, "=")
			if !ok || name == "" || path == "" {
				t.Fatalf("HACHECK_LOAD_COMPARE: %q: want name=path", spec)
			}
			addr := freeAddr(t)
			cmd := startProcess(t, path, "serve", "-c", config, "--spool-root", t.TempDir(), "-B", "127.0.0.1", "-p", portOf(addr))
			waitHTTP(t, "http://"+addr+"/status")
			contenders = append(contenders, contender{name, addr, cmd.Process.Pid})
		}
	}
	contenders = append(contenders, contender{"bare", bareAddr, bare.Process.Pid})

	httpPath := "/http/web/" + backendPort + "/health"
	cases := []struct {
		name string
		run  func(addr string) loadFigures
	}{
		{"cached /http, keep-alive", func(addr string) loadFigures { return runWrk(t, seconds, "http://"+addr+httpPath) }},
		{"cached /http, new connection per request", func(addr string) loadFigures {
			return runWrk(t, seconds, "http://"+addr+httpPath, "-H", "Connection: close")
		}},
		{"/spool, keep-alive", func(addr string) loadFigures { return runWrk(t, seconds, "http://"+addr+"/spool/web/0/") }},
		{"/spool, new connection per request", func(addr string) loadFigures {
			return runWrk(t, seconds, "http://"+addr+"/spool/web/0/", "-H", "Connection: close")
		}},
		{"1,000 services x 50 sources (cached /http), keep-alive", func(addr string) loadFigures {
			return runSpread(t, seconds, addr, backendPort, 1000, 50, false)
		}},
		{"1,000 services x 50 sources (cached /http), new connection per request", func(addr string) loadFigures {
			return runSpread(t, seconds, addr, backendPort, 1000, 50, true)
		}},
	}

	var report strings.Builder
	fmt.Fprintf(&report, "| case | hacheck req/s | bare req/s | ratio | hacheck p50 / p99 | bare p50 / p99 | server CPU a request, hacheck / bare |\n|---|---|---|---|---|---|---|\n")
	for _, c := range cases {
		if filter := os.Getenv("HACHECK_LOAD_CASES"); filter != "" && !strings.Contains(c.name, filter) {
			continue
		}
		// figures[i][round] is contender i's run in that round; bare is the last contender.
		figures := make([][]loadFigures, len(contenders))
		for round := range rounds {
			// Rotate which goes first, so drift in the machine's state hits all alike.
			for k := range contenders {
				i := (round + k) % len(contenders)
				cd := contenders[i]
				figures[i] = append(figures[i], withCPU(t, cd.pid, seconds, func() loadFigures { return c.run(cd.addr) }))
			}
		}
		b := figures[len(contenders)-1]
		bm := medianFigures(b)
		// The ratio is the median of each round's ratio, not the ratio of the medians: the
		// runs of a round are back to back, so the machine's drift (these VMs move by tens of
		// percent over minutes) cancels within a round and not across rounds.
		medianRatio := func(num, den []loadFigures) (float64, []float64) {
			ratios := make([]float64, rounds)
			for i := range ratios {
				ratios[i] = num[i].rps / den[i].rps
			}
			sorted := slices.Sorted(slices.Values(ratios))
			return sorted[len(sorted)/2], ratios
		}
		for i, cd := range contenders[:len(contenders)-1] {
			h := figures[i]
			hm := medianFigures(h)
			ratio, perRound := medianRatio(h, b)
			name := c.name
			if i > 0 {
				name += " [" + cd.name + "]"
				vs, vsRounds := medianRatio(figures[0], h)
				t.Logf("%s: hacheck / %s per round %.3f, median %.3f", c.name, cd.name, vsRounds, vs)
			}
			t.Logf("%s: ratio per round %.3f", name, perRound)
			line := fmt.Sprintf("| %s | %.0f | %.0f | **%.3f** | %s / %s | %s / %s | %s / %s |", name, hm.rps, bm.rps, ratio,
				fmtDur(hm.p50), fmtDur(hm.p99), fmtDur(bm.p50), fmtDur(bm.p99), fmtCPU(hm.cpuPerRequest), fmtCPU(bm.cpuPerRequest))
			t.Log(line)
			report.WriteString(line + "\n")
		}
	}

	rss, hwm := processMemory(t, hacheck.Process.Pid)
	amplification := measureAmplification(t, hacheckAddr)
	cpu, _ := os.ReadFile("/proc/cpuinfo")
	model := regexp.MustCompile(`model name\s*:\s*(.*)`).FindSubmatch(cpu)
	machine := fmt.Sprintf("%d cores", runtime.NumCPU())
	if model != nil {
		machine = string(model[1]) + ", " + machine
	}
	fmt.Fprintf(&report, "\nUpstream amplification: %s. hacheck RSS after the runs: %d MiB (peak %d MiB). "+
		"Runs of %ds, %d alternating rounds; req/s, latencies and CPU are medians, ratios the median of each round's ratio; wrk -t1 -c32; machine: %s; %s.\n",
		amplification, rss>>10, hwm>>10, seconds, rounds, machine, runtime.Version())
	t.Log("\n" + report.String())
	if path := os.Getenv("HACHECK_LOAD_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(report.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

var (
	wrkRPS     = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkLatency = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
)

func runWrk(t *testing.T, seconds int, url string, extra ...string) loadFigures {
	t.Helper()
	args := append([]string{"-t1", "-c32", "-d" + strconv.Itoa(seconds) + "s", "--latency"}, extra...)
	out, err := exec.Command("wrk", append(args, url)...).CombinedOutput()
	if err != nil {
		t.Fatalf("wrk %s: %v\n%s", url, err, out)
	}
	if strings.Contains(string(out), "Non-2xx") {
		t.Fatalf("wrk %s saw failed checks:\n%s", url, out)
	}
	m := wrkRPS.FindSubmatch(out)
	if m == nil {
		t.Fatalf("no Requests/sec in wrk output:\n%s", out)
	}
	f := loadFigures{}
	f.rps, _ = strconv.ParseFloat(string(m[1]), 64)
	for _, l := range wrkLatency.FindAllSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(string(l[2]), 64)
		d := time.Duration(v * float64(map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[string(l[3])]))
		if string(l[1]) == "50" {
			f.p50 = d
		} else {
			f.p99 = d
		}
	}
	return f
}

// runSpread drives addr from `sources` loopback addresses (127.0.0.10 on), one client each,
// every request for one of `services` service names chosen at random: the label and cache
// spread of a real fleet, which wrk cannot make (it cannot bind source addresses). Each client
// keeps one keep-alive connection, or with newConnEach opens a new connection for every request
// and asks the server to close it, as HAProxy checks. The client must cost little and the same
// for both servers, or it measures itself: requests are pre-built bytes and responses are read
// with the benchmarks' minimal parser (status line, Content-Length, discard).
func runSpread(t *testing.T, seconds int, addr, port string, services, sources int, newConnEach bool) loadFigures {
	t.Helper()
	connection := ""
	if newConnEach {
		connection = "Connection: close\r\n"
	}
	requests := make([][]byte, services)
	for i := range requests {
		requests[i] = []byte("GET /http/svc" + strconv.Itoa(i) + "/" + port + "/health HTTP/1.1\r\nHost: lb\r\n" + connection + "\r\n")
	}
	deadline := time.Now().Add(time.Duration(seconds) * time.Second)
	var total atomic.Int64
	latencies := make([][]time.Duration, sources)
	var wg sync.WaitGroup
	errs := make(chan error, sources)
	for i := range sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(10+i))}}
			var conn net.Conn
			r := bufio.NewReaderSize(nil, 4096)
			defer func() {
				if conn != nil {
					conn.Close()
				}
			}()
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			lat := make([]time.Duration, 0, 1<<16)
			for time.Now().Before(deadline) {
				start := time.Now()
				if conn == nil {
					var err error
					if conn, err = dialer.Dial("tcp", addr); err != nil {
						errs <- err
						return
					}
					r.Reset(conn)
				}
				if _, err := conn.Write(requests[rng.IntN(services)]); err != nil {
					errs <- err
					return
				}
				if err := readResponse(r); err != nil {
					errs <- err
					return
				}
				if newConnEach {
					conn.Close()
					conn = nil
				}
				lat = append(lat, time.Since(start))
			}
			latencies[i] = lat
			total.Add(int64(len(lat)))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("spread load against %s: %v", addr, err)
	}
	all := slices.Concat(latencies...)
	slices.Sort(all)
	return loadFigures{rps: float64(total.Load()) / float64(seconds), p50: all[len(all)/2], p99: all[len(all)*99/100]}
}

// measureAmplification fires 100 concurrent requests at each of 20 cold keys whose service
// takes 300 ms, and returns how many upstream checks that made per key.
func measureAmplification(t *testing.T, addr string) string {
	t.Helper()
	var hits atomic.Int64
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		time.Sleep(300 * time.Millisecond) // the slow service being measured, not synchronisation
	}))
	defer slow.Close()
	port := strconv.Itoa(slow.Listener.Addr().(*net.TCPAddr).Port)
	const keys, perKey = 20, 100
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: keys * perKey}}
	for k := range keys {
		for range perKey {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := client.Get(fmt.Sprintf("http://%s/http/cold%d/%s/", addr, k, port))
				if err == nil {
					resp.Body.Close()
				}
			}()
		}
	}
	wg.Wait()
	return fmt.Sprintf("%d concurrent cold requests over %d keys made %d upstream checks (%.2f per key)",
		keys*perKey, keys, hits.Load(), float64(hits.Load())/keys)
}

func medianFigures(runs []loadFigures) loadFigures {
	med := func(get func(loadFigures) float64) float64 {
		v := make([]float64, len(runs))
		for i, r := range runs {
			v[i] = get(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	return loadFigures{
		rps:           med(func(f loadFigures) float64 { return f.rps }),
		p50:           time.Duration(med(func(f loadFigures) float64 { return float64(f.p50) })),
		p99:           time.Duration(med(func(f loadFigures) float64 { return float64(f.p99) })),
		cpuPerRequest: time.Duration(med(func(f loadFigures) float64 { return float64(f.cpuPerRequest) })),
	}
}

func fmtCPU(d time.Duration) string {
	return fmt.Sprintf("%.1fµs", float64(d)/float64(time.Microsecond))
}

// withCPU runs one load run and adds the server's CPU time per request to its figures.
func withCPU(t *testing.T, pid, seconds int, run func() loadFigures) loadFigures {
	t.Helper()
	before := processCPU(t, pid)
	f := run()
	if requests := f.rps * float64(seconds); requests > 0 {
		f.cpuPerRequest = time.Duration(float64(processCPU(t, pid)-before) / requests)
	}
	return f
}

// processCPU is the user and system CPU time pid has used, from /proc/<pid>/stat (fields 14
// and 15, in clock ticks of 1/100 s: Linux's USER_HZ on every architecture Go supports).
func processCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The command name (field 2) may hold spaces; the fields after it start past its ')'.
	fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	if len(fields) < 13 {
		t.Fatalf("/proc/%d/stat: %q", pid, data)
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

func fmtDur(d time.Duration) string {
	if d < time.Millisecond {
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	}
	return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
}

func processMemory(t *testing.T, pid int) (rssKiB, hwmKiB int64) {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) >= 2 && fields[0] == "VmRSS:" {
			rssKiB, _ = strconv.ParseInt(fields[1], 10, 64)
		}
		if len(fields) >= 2 && fields[0] == "VmHWM:" {
			hwmKiB, _ = strconv.ParseInt(fields[1], 10, 64)
		}
	}
	return rssKiB, hwmKiB
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive whole number", name, v)
	}
	return n
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

func startProcess(t *testing.T, name string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}

// waitHTTP polls url until it answers, for a process just started.
func waitHTTP(t *testing.T, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("%s did not come up", url)
}
