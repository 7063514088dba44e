package server

import (
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hacheck/hacheck/server/listener"
	"github.com/rs/zerolog"
)

// Listen opens one listener per port on bind ("" = every address, IPv4 and IPv6), wrapped so
// that Host-less HTTP/1.1 check requests are answered.
func Listen(bind string, ports []int) ([]net.Listener, error) {
	var listeners []net.Listener
	for _, port := range ports {
		addr := net.JoinHostPort(bind, strconv.Itoa(port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			for _, open := range listeners {
				open.Close()
			}
			return nil, fmt.Errorf("listen on %s: %w", addr, err)
		}
		listeners = append(listeners, Wrap(l))
	}
	return listeners, nil
}

// Wrap applies the connection wrappers of package listener to l, with the server's header
// limit (Listen does it already).
func Wrap(l net.Listener) net.Listener { return listener.Wrap(l, maxHeaderBytes) }

// httpServer is the net/http server for s, with every limit set: header size, slow clients,
// idle keep-alive connections, and a write deadline past the longest possible check.
func (s *Server) httpServer() *http.Server {
	return &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.timeouts.readHeader,
		ReadTimeout:       s.timeouts.read,
		WriteTimeout:      s.timeouts.write,
		IdleTimeout:       s.timeouts.idle,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          newStdLogger(s.logger),
		ConnContext:       withConn,
	}
}

// Serve serves on every listener until ctx is cancelled, then shuts down gracefully: no new
// connections, and every connection already accepted gets its answer (bounded by
// shutdownGrace).
func (s *Server) Serve(ctx context.Context, listeners []net.Listener, shutdownGrace time.Duration) error {
	srv := s.httpServer()
	var open openConns
	open.zero = make(chan struct{}, 1)
	srv.ConnState = open.track
	errs := make(chan error, len(listeners))
	for _, l := range listeners {
		go func() { errs <- srv.Serve(l) }()
	}
	select {
	case err := <-errs:
		srv.Close()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	// net/http drops, unanswered, a request it reads once Shutdown has begun: a check that
	// connected just before it would fail. So first stop accepting (with socket activation the
	// connections not accepted yet wait in the kernel for the next hacheck), let every
	// accepted connection have its answer, and only then shut down.
	for _, l := range listeners {
		l.Close()
	}
	// Once its Serve loop has returned, every connection a listener accepted is counted.
	for range listeners {
		<-errs
	}
	open.drain(shutdownCtx, srv)
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// openConns counts the HTTP server's open connections: one atomic add when a connection opens
// and one when it closes, nothing per request.
type openConns struct {
	n    atomic.Int64
	zero chan struct{} // gets a value when the count drops to zero
}

func (o *openConns) track(_ net.Conn, state http.ConnState) {
	switch state {
	case http.StateNew:
		o.n.Add(1)
	case http.StateClosed, http.StateHijacked:
		if o.n.Add(-1) == 0 {
			select {
			case o.zero <- struct{}{}:
			default:
			}
		}
	}
}

// drainPoll is how often drain closes keep-alive connections that went idle after it began.
const drainPoll = 10 * time.Millisecond

// drain waits until every connection of srv is closed or ctx ends. With keep-alives off, each
// busy connection closes after its answer and idle ones are closed; a connection that went
// idle just as they were turned off is caught at the next poll.
func (o *openConns) drain(ctx context.Context, srv *http.Server) {
	srv.SetKeepAlivesEnabled(false)
	tick := time.NewTicker(drainPoll)
	defer tick.Stop()
	for o.n.Load() > 0 {
		select {
		case <-o.zero:
		case <-tick.C:
			srv.SetKeepAlivesEnabled(false)
		case <-ctx.Done():
			return
		}
	}
}

// newStdLogger routes net/http's own complaints (TLS handshakes, accept errors, panics in
// handlers) into the structured log.
func newStdLogger(logger func() *zerolog.Logger) *log.Logger {
	return log.New(stdLogWriter{logger}, "", 0)
}

type stdLogWriter struct{ logger func() *zerolog.Logger }

func (w stdLogWriter) Write(p []byte) (int, error) {
	w.logger().Warn().Str("source", "net/http").Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}

// connKey is the context key under which a request finds its connection, when a wrapped
// listener accepted it.
type connKey struct{}

// withConn is http.Server.ConnContext: requests can then find what was worked out once for
// their connection. The connection itself is stored, not its source address, which would cost
// an allocation per connection.
func withConn(ctx context.Context, c net.Conn) context.Context {
	if listener.Source(c).IsValid() {
		return context.WithValue(ctx, connKey{}, c)
	}
	return ctx
}

// remoteAddr is the request's client address: its connection's, read once at accept, or else
// parsed from RemoteAddr.
func remoteAddr(r *http.Request) netip.Addr {
	if c, ok := r.Context().Value(connKey{}).(net.Conn); ok {
		if src := listener.Source(c); src.IsValid() {
			return src
		}
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
