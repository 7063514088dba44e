package check

import (
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// grpcServer serves grpc-go on a loopback port until the test ends, with the health service
// when statuses is not nil (service name → status; "" is the server as a whole).
func grpcServer(t *testing.T, statuses map[string]healthpb.HealthCheckResponse_ServingStatus) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	if statuses != nil {
		hs := health.NewServer()
		for name, st := range statuses {
			hs.SetServingStatus(name, st)
		}
		healthpb.RegisterHealthServer(srv, hs)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-done; err != nil {
			t.Errorf("grpc server: %v", err)
		}
	})
	return ln.Addr().(*net.TCPAddr).Port
}

func TestGRPC(t *testing.T) {
	healthy := grpcServer(t, map[string]healthpb.HealthCheckResponse_ServingStatus{
		"":         healthpb.HealthCheckResponse_SERVING,
		"svc.Up":   healthpb.HealthCheckResponse_SERVING,
		"svc.Down": healthpb.HealthCheckResponse_NOT_SERVING,
		"svc.Odd":  healthpb.HealthCheckResponse_UNKNOWN,
	})
	draining := grpcServer(t, map[string]healthpb.HealthCheckResponse_ServingStatus{"": healthpb.HealthCheckResponse_NOT_SERVING})
	noHealth := grpcServer(t, nil)
	http1 := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(http1.Close)

	runProtocolCases(t, NewRegistry(Options{}), []protocolCase{
		{name: "server serving", protocol: "grpc", port: healthy, wantCode: 200, outcome: OutcomeOK, msg: regexp.MustCompile(`^gRPC health of the server: SERVING in \d+\.\d{3}s$`)},
		{name: "service serving", protocol: "grpc", port: healthy, query: "svc.Up", wantCode: 200, outcome: OutcomeOK, msg: regexp.MustCompile(`^gRPC health of svc\.Up: SERVING in \d+\.\d{3}s$`)},
		{name: "service not serving", protocol: "grpc", port: healthy, query: "svc.Down", wantCode: 503, outcome: OutcomeUpstreamFail, msg: regexp.MustCompile(`^gRPC health of svc\.Down: NOT_SERVING$`)},
		{name: "service unknown status", protocol: "grpc", port: healthy, query: "svc.Odd", wantCode: 503, outcome: OutcomeUpstreamFail, msg: regexp.MustCompile(`^gRPC health of svc\.Odd: UNKNOWN$`)},
		{name: "unknown service", protocol: "grpc", port: healthy, query: "svc.Nope", wantCode: 503, outcome: OutcomeUpstreamFail, msg: regexp.MustCompile(`^gRPC health of svc\.Nope: unknown service$`)},
		{name: "server not serving", protocol: "grpc", port: draining, wantCode: 503, outcome: OutcomeUpstreamFail, msg: regexp.MustCompile(`^gRPC health of the server: NOT_SERVING$`)},
		{name: "no health service", protocol: "grpc", port: noHealth, wantCode: 503, outcome: OutcomeUpstreamFail, msg: regexp.MustCompile(`^gRPC server has no grpc\.health\.v1\.Health service$`)},
		{name: "host pair ignored", protocol: "grpc", port: healthy, rawQuery: "host=127.0.0.2&authority=x", wantCode: 200, outcome: OutcomeOK, msg: regexp.MustCompile(`SERVING`)},
		{name: "an HTTP/1 server", protocol: "grpc", port: portOf(t, http1.Listener.Addr().String()), wantCode: 503, outcome: OutcomeUpstreamFail, msg: regexp.MustCompile(`^Unavailable: .* after \d+\.\d{3}s$`)},
		{name: "refused", protocol: "grpc", port: closedPort(t), wantCode: 503, outcome: OutcomeRefused, msg: regexp.MustCompile(`connection refused after \d+\.\d{3}s$`)},
		{name: "silent", protocol: "grpc", port: silentPort(t), timeout: 300 * time.Millisecond, wantCode: 503, outcome: OutcomeTimeout, msg: regexp.MustCompile(` after \d+\.\d{3}s$`)},
	})
}
