package server

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hacheck/hacheck/check"
	"github.com/hacheck/hacheck/config"
)

// discardWriter is the cheapest ResponseWriter, so benchmarks measure hacheck, not a recorder.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

// WriteString is what net/http's own ResponseWriter has too: without it, io.WriteString would
// copy every non-empty body to bytes, a cost no real response pays.
func (w *discardWriter) WriteString(s string) (int, error) { return len(s), nil }

func benchServeHTTP(b *testing.B, path string, header ...string) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer backend.Close()
	header = slices.Clone(header)
	for i := 1; i < len(header); i += 2 {
		header[i] = replacePort(header[i], backend)
	}
	benchServe(b, config.Default(), replacePort(path, backend), header...)
}

// benchServe measures srv.ServeHTTP for one request (path and header name/value pairs), in
// parallel, with a server configured by cfg.
func benchServe(b *testing.B, cfg config.Config, path string, header ...string) {
	store := watchedStore(b)
	srv := New(cfg, Options{Store: store, Version: "bench", Logger: zerolog.Nop()})
	// One request before the clock starts: what is measured is the answer from the cache, and a
	// benchmark of an answer that is not a 200 would measure the wrong thing.
	warm := httptest.NewRequest(http.MethodGet, path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		warm.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, warm)
	if rec.Code != http.StatusOK {
		b.Fatalf("GET %s = %d %q before the benchmark; want 200", path, rec.Code, rec.Body.String())
	}
	b.ReportAllocs()
	b.ResetTimer() // the setup's allocations (the metrics' fixed tables) are not per request
	b.RunParallel(func(pb *testing.PB) {
		w := &discardWriter{h: http.Header{}}
		// One request reused: the benchmark measures hacheck's handler, not request parsing.
		r := httptest.NewRequest(http.MethodGet, path, nil)
		r.RemoteAddr = "10.0.0.1:12345"
		for i := 0; i+1 < len(header); i += 2 {
			r.Header.Set(header[i], header[i+1])
		}
		for pb.Next() {
			srv.ServeHTTP(w, r)
			clear(w.h)
		}
	})
}

func replacePort(path string, backend *httptest.Server) string {
	port := backend.Listener.Addr().String()
	port = port[len("127.0.0.1:"):]
	out := []byte{}
	for i := 0; i < len(path); i++ {
		if path[i] == 'P' {
			out = append(out, port...)
			continue
		}
		out = append(out, path[i])
	}
	return string(out)
}

func BenchmarkServeHTTPSpool(b *testing.B)      { benchServeHTTP(b, "/spool/web/0/") }
func BenchmarkServeHTTPCachedHTTP(b *testing.B) { benchServeHTTP(b, "/http/web/P/health") }

// BenchmarkServeHTTPSendState is BenchmarkServeHTTPCachedHTTP with the header HAProxy's
// `http-check send-state` adds, which every such check records for GET /lb.
func BenchmarkServeHTTPSendState(b *testing.B) {
	benchServeHTTP(b, "/http/web/P/health", "X-Haproxy-Server-State",
		"UP; address=127.0.0.1; port=P; name=be_app/app1; node=lb1; weight=1/2; scur=0/0; qcur=0")
}

// BenchmarkCheckRequest is a check request as HAProxy makes it, over a real loopback
// connection (keep-alive, so connection setup does not drown the difference), with hacheck's
// instrumentation on and off (off: the answer alone, with nothing counted for metrics,
// /recent or /status/count): what counting costs on what a check really costs. The client
// writes pre-built bytes and reads with a bare bufio parse, so little of ns/op is its own.
func BenchmarkCheckRequest(b *testing.B) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer backend.Close()
	for _, path := range []string{"/spool/web/0/", replacePort("/http/web/P/health", backend)} {
		for _, instrumented := range []bool{true, false} {
			// key=value names, so `benchstat -col /metrics` puts on and off side by side.
			name := "path=" + strings.SplitN(path[1:], "/", 2)[0] + "/metrics=on"
			if !instrumented {
				name = "path=" + strings.SplitN(path[1:], "/", 2)[0] + "/metrics=off"
			}
			b.Run(name, func(b *testing.B) {
				store := watchedStore(b)
				srv := New(config.Default(), Options{Store: store, Version: "bench", Logger: zerolog.Nop()})
				var addr string
				var shutdown func() error
				if instrumented {
					addr, shutdown = serve(b, srv, 5*time.Second)
				} else {
					// The same server and pipeline with no observer, answering checks and
					// counting nothing: no metrics, /recent, /status/count or log.
					srv.pipeline = check.NewPipeline(store, pipelineSettings(config.Default(), "bench"), nil)
					addr, shutdown = serveAnswersOnly(b, srv)
				}
				defer shutdown()
				request := []byte("GET " + path + " HTTP/1.1\r\nHost: lb\r\n\r\n")
				b.SetParallelism(8) // enough connections to keep the server busy, as a fleet does
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					conn, err := net.Dial("tcp", addr)
					if err != nil {
						b.Error(err)
						return
					}
					defer conn.Close()
					r := bufio.NewReaderSize(conn, 4096)
					for pb.Next() {
						if _, err := conn.Write(request); err != nil {
							b.Error(err)
							return
						}
						if err := readResponse(r); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}

// serveAnswersOnly serves srv's check answers with none of what handleCheck records, on the
// server's own http.Server settings and a wrapped listener.
func serveAnswersOnly(b *testing.B, srv *Server) (addr string, shutdown func() error) {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	hs := srv.httpServer()
	hs.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		protocol, rest, _ := strings.Cut(r.URL.Path[1:], "/")
		srv.answerCheck(w, r, protocol, rest, remoteAddr(r), time.Now())
	})
	done := make(chan error, 1)
	go func() { done <- hs.Serve(Wrap(l)) }()
	return l.Addr().String(), func() error {
		hs.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}

// readResponse consumes one HTTP/1.1 response with a Content-Length, checking for 200.
func readResponse(r *bufio.Reader) error {
	status, err := r.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(status, []byte("HTTP/1.1 200")) {
		return fmt.Errorf("unexpected status line %q", status)
	}
	length := 0
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
			length, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	_, err = r.Discard(length)
	return err
}

// spreadServer is a server whose cache holds a hit for each of `services` services, and 1,000
// requests over them from 50 sources: with 1,000 services, the label and cache spread of a fleet.
func spreadServer(b *testing.B, services int) (*Server, []*http.Request) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	b.Cleanup(backend.Close)
	srv := New(config.Default(), Options{Store: watchedStore(b), Version: "bench", Logger: zerolog.Nop()})
	var requests []*http.Request
	for i := range 1000 {
		r := httptest.NewRequest(http.MethodGet, replacePort("/http/svc"+strconv.Itoa(i%services)+"/P/health", backend), nil)
		r.RemoteAddr = "127.0.0." + strconv.Itoa(10+i%50) + ":40000"
		requests = append(requests, r)
	}
	w := &discardWriter{h: http.Header{}}
	for _, r := range requests { // warm the cache: the benchmarks are of hits
		srv.ServeHTTP(w, r)
	}
	return srv, requests
}

// BenchmarkServeHTTPSpread is cached /http checks spread over 1,000 services from 50 sources,
// the label and cache spread of a fleet.
func BenchmarkServeHTTPSpread(b *testing.B) {
	srv, requests := spreadServer(b, 1000)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := &discardWriter{h: http.Header{}}
		i := 0
		for pb.Next() {
			srv.ServeHTTP(w, requests[i%len(requests)])
			i += 7
		}
	})
}

// BenchmarkServeHTTPCold is cached /http checks from 50 sources with the CPU's caches mostly
// evicted between requests, as under load the kernel's and net/http's work between two requests
// evicts them, for one service and for 1,000: the difference is what a fleet's spread costs in
// cache misses on per-service data (cache entry, key, series, /recent and /status/count slots),
// since with one service that data is the same every time. It reports handler-ns/op: ns/op less
// the cost of the eviction and of touching the request (net/http has just parsed it, so it is
// warm), measured alone first. The eviction also reaches hacheck's shared state and code, so
// either figure alone overstates what a request costs under load.
func BenchmarkServeHTTPCold(b *testing.B) {
	for _, services := range []int{1, 1000} {
		b.Run(strconv.Itoa(services)+"-services", func(b *testing.B) {
			srv, requests := spreadServer(b, services)
			w := &discardWriter{h: http.Header{}}
			// As much as the L2 of the machines measured (1 MiB a core), within their L3.
			const evictBytes, bufferBytes = 1 << 20, 8 << 20
			evict := make([]byte, bufferBytes)
			for i := range evict { // fault the pages in before anything is timed
				evict[i] = 1
			}
			offset, touched := 0, 0
			coldRequest := func(i int) *http.Request {
				for range evictBytes / 64 {
					evict[offset]++
					offset = (offset + 64) % len(evict)
				}
				r := requests[i%len(requests)]
				touched += len(r.Method) + len(r.Header) + len(r.Host)
				for _, text := range []string{r.URL.Path, r.RemoteAddr} {
					for j := 0; j < len(text); j += 16 {
						touched += int(text[j])
					}
				}
				return r
			}
			const calibration = 10000
			start := time.Now()
			for i := range calibration {
				coldRequest(i * 7)
			}
			overhead := time.Since(start) / calibration
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i += 7 {
				srv.ServeHTTP(w, coldRequest(i))
			}
			b.ReportMetric(float64(b.Elapsed()/time.Duration(b.N)-overhead), "handler-ns/op")
			if touched == 0 {
				b.Fatal("no request touched")
			}
		})
	}
}

// The check paths HAProxy hits thousands of times a second allocate nothing in hacheck's own
// code once warm (net/http's own allocations are not counted here: the request is reused).
func TestHotPathsAllocateNothing(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer backend.Close()
	srv := New(config.Default(), Options{Store: watchedStore(t), Version: "test", Logger: zerolog.Nop()})
	for _, path := range []string{"/spool/web/0/", replacePort("/http/web/P/health", backend)} {
		r := httptest.NewRequest(http.MethodGet, path, nil)
		r.RemoteAddr = "10.0.0.1:12345"
		w := &discardWriter{h: http.Header{}}
		srv.ServeHTTP(w, r) // warm: cache filled, series and slots made
		if n := testing.AllocsPerRun(200, func() { srv.ServeHTTP(w, r) }); n != 0 {
			t.Errorf("%s: %.1f allocations per request, want 0", path, n)
		}
	}
}
