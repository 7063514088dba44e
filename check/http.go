package check

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// maxResponseHeaderBytes bounds the upstream's response headers, as BodyLimit bounds its body.
const maxResponseHeaderBytes = 64 << 10

// httpChecker is the "http" and "https" protocols: GET 127.0.0.1:<port>/<query>?<qs> and pass
// the upstream's status and (capped) body through.
type httpChecker struct {
	scheme            string
	userAgent         string
	serviceNameHeader string
	bodyLimit         int64
	client            *http.Client
}

// newLocalTransport is the HTTP transport of checks that speak HTTP to 127.0.0.1; clients use
// it wrapped in withinCheck, so that its dials end with their check.
func newLocalTransport() *http.Transport {
	return &http.Transport{
		// Never the environment's HTTP_PROXY: the check is of this host, not of a proxy.
		Proxy:       nil,
		DialContext: dialWithinCheck(&net.Dialer{}),
		// Checks of one service are seconds apart (cache_time) and HAProxy itself opens a new
		// connection for every check, so pooled connections would only pile up idle, one per
		// checked port, and a pooled connection the service has since closed would fail a
		// check for no fault of the service. A fresh connection also tests what HAProxy's own
		// traffic needs: that the service still accepts.
		DisableKeepAlives: true,
		// Pass the upstream's bytes through as sent, and never inflate a body we only cap.
		DisableCompression:     true,
		MaxResponseHeaderBytes: maxResponseHeaderBytes,
	}
}

// newHTTPChecker builds the http checker, or the https one when useTLS is set. opts.BodyLimit
// must already be defaulted.
func newHTTPChecker(opts Options, useTLS bool) *httpChecker {
	transport := newLocalTransport()
	scheme := "http"
	if useTLS {
		scheme = "https"
		// The certificate is not verified: the peer is always 127.0.0.1, whose certificate
		// is issued for the service's public name, not for the loopback address.
		transport.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // localhost only, see above
	}
	return &httpChecker{
		scheme:            scheme,
		userAgent:         "hacheck/" + opts.Version,
		serviceNameHeader: opts.ServiceNameHeader,
		bodyLimit:         opts.BodyLimit,
		client: &http.Client{
			Transport: withinCheck{transport},
			// A redirect's code goes to HAProxy, which decides what it means; following it
			// could also lead the check away from the local host.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// checkContextKey carries a check's context to the dialer; see dialWithinCheck.
type checkContextKey struct{}

// withinCheck is the round tripper of every check client over a newLocalTransport: it hands
// each request's context to dialWithinCheck as a value, since net/http dials under a context
// that keeps the request's values but not its cancellation.
type withinCheck struct{ *http.Transport }

// RoundTrip sends req through the transport with its context reachable from the dialer.
func (w withinCheck) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	return w.Transport.RoundTrip(req.WithContext(context.WithValue(ctx, checkContextKey{}, ctx)))
}

// dialWithinCheck dials as d does, but never longer than the check that asked for the
// connection. net/http dials under a context cut off from the request's cancellation (a
// connection one request started may serve the next), so a dial to a port whose accept queue
// is full would go on resending SYNs for minutes after its check answered, holding a goroutine
// and a descriptor each: the dial is cancelled when the check ends instead. The connection then
// carries the check's deadline, which bounds what net/http does next under that same detached
// context, the TLS handshake (it has no timeout of its own here) included, as well as every read
// and write of the check. Keep-alives are off, so a connection never outlives its one check.
func dialWithinCheck(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		check, ok := ctx.Value(checkContextKey{}).(context.Context)
		if !ok {
			return d.DialContext(ctx, network, addr)
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stop := context.AfterFunc(check, cancel)
		defer stop()
		conn, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if deadline, ok := check.Deadline(); ok {
			if err := conn.SetDeadline(deadline); err != nil {
				_ = conn.Close()
				return nil, err
			}
		}
		return conn, nil
	}
}

// readCapped reads r to its end or to limit bytes. When net/http knows the body's length (not
// -1) it reads into one buffer of that size, capped, and stops at that length as net/http's
// body does: io.ReadAll would grow its buffer by doubling, garbage of twice the body on every
// check.
func readCapped(r io.Reader, length, limit int64) ([]byte, error) {
	if length < 0 {
		return io.ReadAll(io.LimitReader(r, limit))
	}
	buf := make([]byte, min(length, limit))
	n, err := io.ReadFull(r, buf)
	return buf[:n], err
}

// asCheckDeadline reports a socket timeout at the check's deadline as the check's context's
// error: the socket's deadline is the check's (see dialWithinCheck), and whether the socket or
// the context noticed first is a race that must not change the message.
func asCheckDeadline(ctx context.Context, err error) error {
	deadline, ok := ctx.Deadline()
	if netErr, isNet := errors.AsType[net.Error](err); !ok || !isNet || !netErr.Timeout() || time.Now().Before(deadline) {
		return err
	}
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return &url.Error{Op: ue.Op, URL: ue.URL, Err: context.DeadlineExceeded}
	}
	return context.DeadlineExceeded
}

// DrainsWith404: HAProxy's HTTP checks read a drain mark's 404 as NOLB (disable-on-404).
func (c *httpChecker) DrainsWith404() {}

// Check answers with the upstream's status code and body (capped at the body limit, with a
// note when cut), outcome ok for 2xx and upstream_fail for anything else; when no response
// arrives it answers 503 "<error> after <s>s". Target.Query is taken as a decoded path and is
// escaped as needed; Target.RawQuery is sent verbatim.
func (c *httpChecker) Check(ctx context.Context, t Target) (Result, error) {
	u := &url.URL{
		Scheme:   c.scheme,
		Host:     localAddr(t.Port),
		Path:     "/" + t.Query,
		RawQuery: t.RawQuery,
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return Result{}, fmt.Errorf("building %s check request for %s: %w", c.scheme, t.Service, err)
	}
	req.Header.Set("User-Agent", c.userAgent)
	// Forwarded headers come after User-Agent: an operator who lists User-Agent in
	// http_headers_to_copy asked for the client's one.
	for name, values := range t.Header {
		if http.CanonicalHeaderKey(name) == "Host" {
			// net/http sends req.Host, never a Host entry in req.Header.
			if len(values) > 0 {
				req.Host = values[0]
			}
			continue
		}
		for _, v := range values {
			req.Header.Add(name, v)
		}
	}
	if c.serviceNameHeader != "" {
		req.Header.Set(c.serviceNameHeader, t.Service)
	}

	start := time.Now()
	resp, err := c.client.Do(req)
	if err != nil {
		return failure(ctx, asCheckDeadline(ctx, err), time.Since(start)), nil
	}
	// Without keep-alives there is nothing to gain from draining the rest: closing drops the
	// connection, so an endless body cannot hold the check.
	defer resp.Body.Close()

	body, err := readCapped(resp.Body, resp.ContentLength, c.bodyLimit+1)
	if err != nil {
		return failure(ctx, fmt.Errorf("reading body of %d response: %w", resp.StatusCode, asCheckDeadline(ctx, err)), time.Since(start)), nil
	}
	msg := string(body)
	if int64(len(body)) > c.bodyLimit {
		msg = string(body[:c.bodyLimit]) + fmt.Sprintf("\n[hacheck: body truncated at %d bytes]", c.bodyLimit)
	}
	outcome := OutcomeUpstreamFail
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		outcome = OutcomeOK
	}
	return Result{Code: resp.StatusCode, Message: msg, Outcome: outcome}, nil
}
