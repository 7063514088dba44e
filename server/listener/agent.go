package listener

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"time"
)

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
	// DefaultAgentMaxPerSource bounds the connections of one host the same way, so that one
	// host holding hundreds of idle connections keeps most of the room free.
	DefaultAgentMaxPerSource = 32
	// DefaultAgentMaxLineBytes bounds what is read of a request line.
	DefaultAgentMaxLineBytes = 256
)

// AgentRequest is what an agent-check client asked.
type AgentRequest struct {
	// Line is what it sent, without its line end, up to the line end, the read window's end
	// or its close, whichever came first.
	Line string
	// Complete: Line ended with "\n". Overlong: MaxLineBytes came without a line end; Line is
	// then "", and more may have followed.
	Complete, Overlong bool
	Source             netip.Addr // IPv4-mapped addresses unmapped
}

// AgentServer is HAProxy's agent-check listener: one request line per connection (HAProxy's
// agent-send), one reply line, then close. What the reply says is Answer's; this is the
// connections: their read window, bounds, and who makes room for whom.
type AgentServer struct {
	// Answer is the reply to req, without its "\n"; sent, when not nil, is called once the
	// reply is written.
	Answer func(req AgentRequest) (reply string, sent func())
	// Allow, when set, says whether a client address may ask; any other connection is closed
	// unanswered, which HAProxy counts as a failed agent check, one that changes nothing.
	Allow func(netip.Addr) bool
	// ReadTimeout, WriteTimeout, MaxConns, MaxPerSource and MaxLineBytes: 0 means the
	// defaults above.
	ReadTimeout, WriteTimeout            time.Duration
	MaxConns, MaxPerSource, MaxLineBytes int
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
	source := remoteAddr(c)
	if a.Allow != nil && !a.Allow(source) {
		return
	}
	readTimeout := cmpOr(a.ReadTimeout, DefaultAgentReadTimeout)
	c.SetReadDeadline(time.Now().Add(readTimeout))
	req := AgentRequest{Source: source}
	req.Line, req.Complete, req.Overlong = readLine(c, cmpOr(a.MaxLineBytes, DefaultAgentMaxLineBytes))
	if !h.busy() {
		return // closed to make room for another while it waited
	}
	reply, sent := a.Answer(req)
	c.SetWriteDeadline(time.Now().Add(cmpOr(a.WriteTimeout, DefaultAgentWriteTimeout)))
	if _, err := io.WriteString(c, reply+"\n"); err != nil {
		return
	}
	if sent != nil {
		sent()
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

// cmpOr is v, or def when v is not above 0.
func cmpOr[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
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
