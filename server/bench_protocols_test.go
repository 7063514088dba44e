package server

import (
	"bufio"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/hacheck/hacheck/config"
)

// BenchmarkServeHTTPCachedProtocols is a cached check of each protocol beyond http, through
// the whole handler. Every protocol answers from the same cache, so each should cost what
// BenchmarkServeHTTPCachedHTTP does; the upstream is asked once, before the clock starts.
func BenchmarkServeHTTPCachedProtocols(b *testing.B) {
	stats := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("# pxname,svname,status\nweb,BACKEND,UP\n"))
	}))
	defer stats.Close()
	smtp := benchSMTPStub(b)
	grpcPort := benchGRPCHealth(b)

	cfg := config.Default()
	cfg.PostgresUsername, cfg.MySQLUsername = "postgres", "root"
	for _, bench := range []struct {
		protocol string
		port     int
		query    string
		external bool // a server of the machine's, not one this benchmark starts
	}{
		{"redis", 6379, "", true},
		{"redis-info", 6379, "match?role=master", true},
		{"sentinel", 6379, "", true},
		{"haproxy", stats.Listener.Addr().(*net.TCPAddr).Port, "", false},
		{"smtp", smtp, "", false},
		{"grpc", grpcPort, "", false},
		{"postgres", 5432, "primary", true},
		{"mysql", 3306, "primary", true},
	} {
		b.Run("protocol="+bench.protocol, func(b *testing.B) {
			if bench.external {
				conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(bench.port), time.Second)
				if err != nil {
					if os.Getenv("CI") != "" {
						b.Fatal(err)
					}
					b.Skip(err)
				}
				_ = conn.Close()
			}
			service := "web"
			benchServe(b, cfg, "/"+bench.protocol+"/"+service+"/"+strconv.Itoa(bench.port)+"/"+bench.query)
		})
	}
}

// benchSMTPStub greets, and answers QUIT with 221, on a loopback port until the benchmark ends.
func benchSMTPStub(b *testing.B) int {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				_, _ = conn.Write([]byte("220 bench ESMTP\r\n"))
				if _, err := bufio.NewReader(conn).ReadString('\n'); err == nil {
					_, _ = conn.Write([]byte("221 bye\r\n"))
				}
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// benchGRPCHealth serves a grpc-go health service reporting SERVING until the benchmark ends.
func benchGRPCHealth(b *testing.B) int {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(srv.Stop)
	return ln.Addr().(*net.TCPAddr).Port
}
