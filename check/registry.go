package check

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"
	"time"
)

// DefaultBodyLimit is how many bytes of an upstream http(s) body become the message when
// Options.BodyLimit is 0.
const DefaultBodyLimit = 4096

// Options configures the checkers NewRegistry builds. The zero value is usable: no version in
// the User-Agent, no service-name header, mysql and postgres answering "no username", a 4 KiB
// body cap.
type Options struct {
	Version           string // hacheck's version, sent as User-Agent: hacheck/<Version>
	ServiceNameHeader string // when set, http(s) checks send <ServiceNameHeader>: <service>
	// MySQLUsername empty means "not configured"; MySQLPassword may be empty (a passwordless
	// account is a legitimate, if unwise, setup).
	MySQLUsername, MySQLPassword string
	// PostgresUsername empty means "not configured"; PostgresDatabase empty means
	// DefaultPostgresDatabase.
	PostgresUsername, PostgresPassword, PostgresDatabase string

	BodyLimit int64 // cap on the upstream http(s) body kept; 0 means DefaultBodyLimit
}

// NewRegistry returns every protocol hacheck knows, configured by opts. This is the one place
// the protocol list lives: the server routes by the map it returns, and a test holds the
// README's protocol table to it. What a protocol can do beyond checking (no port, 404 on drain,
// no cache) its checker says by the optional interfaces in check.go.
func NewRegistry(opts Options) Registry {
	if opts.BodyLimit <= 0 {
		opts.BodyLimit = DefaultBodyLimit
	}
	return Registry{
		"spool": spoolChecker{},
		"http":  newHTTPChecker(opts, false),
		"https": newHTTPChecker(opts, true),
		"tcp":   newTCPChecker(),
		"mysql": newMySQLChecker(opts),

		"redis":         &redisChecker{},
		"sentinel":      &redisChecker{sentinel: true},
		"redis-info":    &redisChecker{info: true},
		"sentinel-info": &redisChecker{info: true, sentinel: true},
		"haproxy":       newHAProxyChecker(opts),
		"smtp":          &smtpChecker{},
		"grpc":          newGRPCChecker(opts),
		"postgres":      newPostgresChecker(opts),
	}
}

// localAddr is the only address checks go to; no part of a Target can change it.
func localAddr(port int) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// seconds formats an elapsed time as the Python hacheck did: seconds with three decimals.
func seconds(d time.Duration) string {
	return fmt.Sprintf("%.3fs", d.Seconds())
}

// failure turns an error from talking to the service into the 503 Result every network
// protocol answers with, classified so metrics can tell a hung service from an absent one.
func failure(ctx context.Context, err error, elapsed time.Duration) Result {
	return Result{
		Code:    503,
		Message: fmt.Sprintf("%v after %s", err, seconds(elapsed)),
		Outcome: classify(ctx, err),
	}
}

// classify maps a network error to its Outcome. The context is consulted as well as the error
// because some libraries report a deadline as a generic "use of closed connection" once the
// context has torn the socket down.
func classify(ctx context.Context, err error) Outcome {
	var netErr net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &netErr) && netErr.Timeout(),
		errors.Is(ctx.Err(), context.DeadlineExceeded):
		return OutcomeTimeout
	case errors.Is(err, syscall.ECONNREFUSED):
		return OutcomeRefused
	case errors.Is(err, context.Canceled), errors.Is(ctx.Err(), context.Canceled):
		// The caller gave up (client gone, shutdown); that says nothing about the service.
		return OutcomeError
	default:
		return OutcomeUpstreamFail
	}
}
