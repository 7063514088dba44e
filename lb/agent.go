package lb

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"

	"github.com/hacheck/hacheck/spool"
)

// Verdict is what the spool says of one (service, port), as far as the agent check cares.
type Verdict struct {
	Down   bool   // a mark holds it out of rotation
	Drain  bool   // that mark is a drain mark: finish sessions, take no new ones
	Reason string // the mark's reason
	// Weight is the share of its configured weight the server should get, in percent (0–256),
	// from a mark that sets one; -1 when none does.
	Weight int
}

// Lookup is what the agent needs of the spool: the verdict for (service, port) at now. port is
// 0 when the request named none; service is spool.AllServices when it named nothing usable.
type Lookup func(service string, port int, now time.Time) Verdict

// maxReasonBytes bounds the reason in a maint reply: HAProxy shows it in its stats as the
// agent's last answer, where a short line is what an operator reads.
const maxReasonBytes = 200

// Reply is the agent-check answer for v, without its "\n", in HAProxy's agent grammar:
//
//   - "drain" for a drain mark (HAProxy: DRAIN, existing sessions finish);
//   - "maint # <reason>" for any other mark (HAProxy: MAINT, an operator's action rather
//     than a failed check), or "maint" when there is no reason;
//   - "ready NN%" otherwise, NN the mark's weight or 100. Only "ready" brings a server back
//     from MAINT or DRAIN, and a percentage is always sent because HAProxy keeps the last
//     weight an agent gave until the agent gives another: without it, removing a weight mark
//     would leave the server at the reduced weight.
func Reply(v Verdict) string {
	switch {
	case v.Down && v.Drain:
		return "drain"
	case v.Down:
		reason := oneLine(v.Reason, maxReasonBytes)
		if reason == "" {
			return "maint"
		}
		return "maint # " + reason
	}
	weight := v.Weight
	if weight < 0 || weight > spoolMaxWeight {
		weight = 100
	}
	return "ready " + strconv.Itoa(weight) + "%"
}

// spoolMaxWeight is the largest percentage HAProxy's agent check accepts.
const spoolMaxWeight = 256

// oneLine makes s safe inside one agent reply: control characters (line breaks above all,
// which would end the reply early) become spaces, and it is cut to at most n bytes on a rune
// boundary.
func oneLine(s string, n int) string {
	s = strings.TrimSpace(strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD")))
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// MaxRequestBytes bounds what is read of an agent-send line: a service name (at most 128
// bytes), ':' and a port, with room for a "\r".
const MaxRequestBytes = spool.MaxNameLen + 8

// ParseRequest reads HAProxy's agent-send line, "<service>[:<port>]" with its line ending
// already removed. ok is false when it names no valid service and port.
func ParseRequest(line string) (service string, port int, ok bool) {
	line = strings.TrimSpace(line)
	service, portText, hasPort := strings.Cut(line, ":")
	if spool.ValidateName(service) != nil {
		return "", 0, false
	}
	if !hasPort {
		return service, 0, true
	}
	p := number(portText)
	if p < 1 || p > 65535 || spool.ValidatePort(service, p) != nil {
		return "", 0, false
	}
	return service, p, true
}

// Defaults of AgentServer's fields left at zero.
const (
	// DefaultAgentReadTimeout is how long the agent waits for the agent-send line. HAProxy
	// sends it as soon as the connection is up, and when it sends none, the reply must still
	// come before HAProxy's check timeout, which can be as short as its agent-inter.
	DefaultAgentReadTimeout = 100 * time.Millisecond
	// DefaultAgentWriteTimeout bounds writing the reply.
	DefaultAgentWriteTimeout = time.Second
	// DefaultAgentMaxConns bounds the connections held at once. A new connection is always
	// taken: when the bound is reached, the one held longest while waiting for its request (or
	// for the client to close after the reply) is closed to make room. HAProxy sends its
	// request as it connects and closes as it has the reply, so its connections are never
	// the ones held longest; idle or slow clients only push out each other.
	DefaultAgentMaxConns = 256
	// DefaultAgentMaxPerSource bounds the connections of one client address the same way, so
	// that one host holding hundreds of idle connections keeps most of the room free.
	DefaultAgentMaxPerSource = 32
)

// AgentServer answers HAProxy's agent checks from the spool: one line per connection, then close.
//
// What is asked is HAProxy's agent-send line, "<service>[:<port>]\n". When nothing arrives
// within ReadTimeout, or what arrives is not a valid service (and port), or is longer than
// MaxRequestBytes without a line end, the answer is the host-wide mark's alone (service
// spool.AllServices): the spool is still what decides, as far as the request lets it tell. A
// valid name that arrives without its "\n" before ReadTimeout still counts.
type AgentServer struct {
	Lookup Lookup
	// Allow, when set, says whether a client address may ask; any other connection is closed
	// unanswered, which HAProxy counts as a failed agent check, one that changes nothing.
	Allow   func(netip.Addr) bool
	Tracker *Tracker               // when set, every reply is recorded (RecordAgent)
	Logger  func() *zerolog.Logger // when set, unusable requests are logged at debug
	Now     func() time.Time       // nil: time.Now
	// ReadTimeout, WriteTimeout, MaxConns and MaxPerSource: 0 means the defaults above.
	ReadTimeout, WriteTimeout time.Duration
	MaxConns, MaxPerSource    int
}

// Serve answers every connection l accepts until ctx is cancelled or l fails; it closes l and
// returns once every connection it started is done. The error is nil after ctx is cancelled.
func (a *AgentServer) Serve(ctx context.Context, l net.Listener) error {
	held := newHeldConns(a.MaxConns, a.MaxPerSource)
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	defer l.Close()
	backoff := 5 * time.Millisecond
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) {
				// Out of descriptors or a transient failure: wait rather than spin.
				select {
				case <-time.After(backoff):
				case <-ctx.Done():
					return nil
				}
				backoff = min(2*backoff, time.Second)
				continue
			}
			return err
		}
		backoff = 5 * time.Millisecond
		h := held.add(c)
		if h == nil {
			continue // no room, and nobody waiting to make it: closed
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer held.remove(h)
			a.serveConn(c, h)
		}()
	}
}

// ServeConn answers one agent-check connection and closes it.
func (a *AgentServer) ServeConn(c net.Conn) { a.serveConn(c, nil) }

// serveConn answers c; h, when set, is c's entry in the held connections, marked waiting while
// c waits on its client.
func (a *AgentServer) serveConn(c net.Conn, h *heldConn) {
	defer c.Close()
	if a.Allow != nil && !a.Allow(remoteAddr(c)) {
		return
	}
	readTimeout := a.ReadTimeout
	if readTimeout <= 0 {
		readTimeout = DefaultAgentReadTimeout
	}
	writeTimeout := a.WriteTimeout
	if writeTimeout <= 0 {
		writeTimeout = DefaultAgentWriteTimeout
	}
	c.SetReadDeadline(time.Now().Add(readTimeout))
	line, complete, overlong := readLine(c, MaxRequestBytes)
	if !h.busy() {
		return // closed to make room for another while it waited
	}
	service, port, ok := ParseRequest(line)
	if !ok {
		if (complete || overlong || line != "") && a.Logger != nil {
			a.Logger().Debug().Str("remote", c.RemoteAddr().String()).Str("request", oneLine(line, 64)).
				Msg("agent request names no valid service; answering for the host-wide mark")
		}
		service, port = spool.AllServices, 0
	}
	now := time.Now()
	if a.Now != nil {
		now = a.Now()
	}
	reply := Reply(a.Lookup(service, port, now))
	c.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := io.WriteString(c, reply+"\n"); err != nil {
		return
	}
	if a.Tracker != nil {
		a.Tracker.RecordAgent(service, port, remoteAddr(c), reply, now)
	}
	// Bytes the client sent and we did not read (the rest of an overlong line, anything after
	// the line) would make close send a reset, which can destroy the reply before the client
	// reads it: end our side first, then let the rest drain briefly. HAProxy closes as soon
	// as it has the reply, which ends the drain at once.
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		h.wait()
		c.SetReadDeadline(time.Now().Add(readTimeout))
		io.Copy(io.Discard, io.LimitReader(c, 64<<10))
	}
}

// readLine reads up to a "\n" within max bytes or until the read deadline or EOF. complete
// says the line ended with "\n"; the line is returned without its line ending either way.
// overlong says max bytes came without a line end: the line is then "", and more may follow.
func readLine(r io.Reader, max int) (line string, complete, overlong bool) {
	buf := make([]byte, max)
	n := 0
	for n < max {
		m, err := r.Read(buf[n:])
		if i := bytes.IndexByte(buf[n:n+m], '\n'); i >= 0 {
			return strings.TrimSuffix(string(buf[:n+i]), "\r"), true, false
		}
		n += m
		if err != nil {
			break
		}
	}
	if n == max {
		return "", false, true // an endless line is not a request
	}
	return string(buf[:n]), false, false
}

func remoteAddr(c net.Conn) netip.Addr {
	if tcp, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return tcp.AddrPort().Addr().Unmap()
	}
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
