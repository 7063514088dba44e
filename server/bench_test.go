package server

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hacheck/hacheck/spool"
)

// discardWriter is the cheapest ResponseWriter, so benchmarks measure hacheck, not a recorder.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

func benchServeHTTP(b *testing.B, path string) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer backend.Close()
	store := spool.New(b.TempDir())
	if err := store.Watch(); err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	srv := New(DefaultConfig(), Options{Store: store, Version: "bench", Logger: zerolog.Nop()})
	path = replacePort(path, backend)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		w := &discardWriter{h: http.Header{}}
		// One request reused: the benchmark measures hacheck's handler, not request parsing.
		r := httptest.NewRequest(http.MethodGet, path, nil)
		r.RemoteAddr = "10.0.0.1:12345"
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
