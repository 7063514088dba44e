package check

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// maxGRPCReply bounds the health reply and its headers: a status enum and a few metadata lines.
const maxGRPCReply = 16 << 10

// grpcChecker is the "grpc" protocol: grpc.health.v1.Health/Check on 127.0.0.1:<port>, in
// plaintext (HTTP/2 without TLS, as a service listening on loopback for its sidecars does),
// with the check's query as the service name.
type grpcChecker struct {
	userAgent string
}

func newGRPCChecker(opts Options) *grpcChecker {
	return &grpcChecker{userAgent: "hacheck/" + opts.Version}
}

// Check answers 200 "gRPC health of <name>: SERVING in <s>s" when the server reports SERVING
// for the service named by the query ("" asks about the server as a whole); 503 with the
// status for any other (NOT_SERVING, UNKNOWN, SERVICE_UNKNOWN), 503 "... unknown service" when
// the server does not know the name, 503 when it has no health service; and 503 "<error>
// after <s>s" when it cannot be reached or does not answer in time. Check never returns an
// error.
func (c *grpcChecker) Check(ctx context.Context, t Target) (Result, error) {
	var (
		mu      sync.Mutex
		dialErr error
	)
	dialer := &net.Dialer{}
	// The address grpc-go hands over is ignored: the dialler knows only 127.0.0.1:<port>, so no
	// resolver, service config or proxy setting can send the check elsewhere.
	addr := localAddr(t.Port)
	dial := func(ctx context.Context, _ string) (net.Conn, error) {
		conn, err := dialer.DialContext(ctx, "tcp", addr)
		if err != nil {
			mu.Lock()
			dialErr = err
			mu.Unlock()
		}
		return conn, err
	}
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(dial),
		grpc.WithNoProxy(),
		grpc.WithDisableServiceConfig(),
		grpc.WithDisableRetry(),
		grpc.WithUserAgent(c.userAgent),
		grpc.WithMaxHeaderListSize(maxGRPCReply),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxGRPCReply)),
	)
	if err != nil {
		return Result{}, fmt.Errorf("configuring grpc check of %s: %w", t.Service, err)
	}
	// A fresh connection per check, as HAProxy's own checks are: a pooled one could hide a
	// server that no longer accepts.
	defer conn.Close()

	name := t.Query
	if name == "" {
		name = "the server"
	}
	start := time.Now()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: t.Query})
	elapsed := time.Since(start)
	if err != nil {
		mu.Lock()
		derr := dialErr
		mu.Unlock()
		return grpcFailure(ctx, name, err, derr, elapsed), nil
	}
	state := resp.GetStatus()
	if state == healthpb.HealthCheckResponse_SERVING {
		return Result{Code: 200, Message: "gRPC health of " + oneLine(name) + ": SERVING in " + seconds(elapsed), Outcome: OutcomeOK}, nil
	}
	stateName, ok := healthpb.HealthCheckResponse_ServingStatus_name[int32(state)]
	if !ok {
		stateName = "status " + strconv.Itoa(int(state))
	}
	return Result{Code: 503, Message: "gRPC health of " + oneLine(name) + ": " + stateName, Outcome: OutcomeUpstreamFail}, nil
}

// grpcFailure turns a failed Health/Check call into its 503. gRPC reports a refused connection
// as Unavailable with the dial error in its text; the dial error itself says what happened.
func grpcFailure(ctx context.Context, name string, err, dialErr error, elapsed time.Duration) Result {
	st, _ := status.FromError(err)
	switch st.Code() {
	case codes.NotFound:
		return Result{Code: 503, Message: "gRPC health of " + oneLine(name) + ": unknown service", Outcome: OutcomeUpstreamFail}
	case codes.Unimplemented:
		return Result{Code: 503, Message: "gRPC server has no grpc.health.v1.Health service", Outcome: OutcomeUpstreamFail}
	case codes.DeadlineExceeded:
		return failure(ctx, context.DeadlineExceeded, elapsed)
	case codes.Unavailable:
		if dialErr != nil {
			return failure(ctx, dialErr, elapsed)
		}
	}
	return failure(ctx, errors.New(oneLine(st.Code().String()+": "+st.Message())), elapsed)
}
