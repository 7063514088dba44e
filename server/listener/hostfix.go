package listener

import (
	"bytes"
	"net"
	"net/netip"
)

// InjectedHost is the Host value given to HTTP/1.1 requests that arrived without one. The
// handler must recognise it and treat the request as Host-less, so nothing invented is
// forwarded to the checked service.
const InjectedHost = "hacheck.invalid"

// hostFixListener lets HTTP/1.1 check requests without a Host header through. HAProxy sends
// `option httpchk GET /x HTTP/1.1` with no Host; net/http answers such a request with
// "400 missing required Host header" before any handler runs, which would mark every server
// DOWN. The wrapper reads the first request's header block of each connection and, when it is
// HTTP/1.1 and has no Host line, inserts one after the request line. HAProxy opens a new
// connection for every check, so the first request is the one that matters; later requests on
// a keep-alive connection pass through untouched.
type hostFixListener struct {
	net.Listener
	maxHeaderBytes int
}

func (l hostFixListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	fixed := &hostFixConn{Conn: c, limit: l.maxHeaderBytes}
	// RemoteAddr here, in the accept loop, is a field read for the TCP listeners Wrap is for;
	// a listener whose RemoteAddr reads from the client (a PROXY-protocol one) would hold up
	// every accept behind a slow client.
	if addr, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		fixed.source = addr.AddrPort().Addr().Unmap()
	}
	return fixed, nil
}

type hostFixConn struct {
	net.Conn
	// source is the client's address, worked out once per connection rather than parsed from
	// Request.RemoteAddr on every request (see Source).
	source  netip.Addr
	limit   int
	passing bool   // the first header block has been handled
	pending []byte // bytes read from the connection and not yet handed to net/http
	readErr error  // error seen while buffering, returned once pending is drained
}

func (c *hostFixConn) Read(p []byte) (int, error) {
	if !c.passing {
		c.bufferFirstHeader()
	}
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	if c.readErr != nil {
		err := c.readErr
		c.readErr = nil
		return 0, err
	}
	return c.Conn.Read(p)
}

// bufferFirstHeader reads until the end of the first header block (or the limit, or an error;
// net/http then answers as it would have), and adds a Host line if one is needed. Deadlines set
// by net/http on the connection apply to these reads, so slow clients are still cut off.
func (c *hostFixConn) bufferFirstHeader() {
	c.passing = true
	buf := make([]byte, 0, 1024)
	for {
		if end := headerEnd(buf); end >= 0 {
			c.pending = addHostIfMissing(buf, end)
			return
		}
		if len(buf) > c.limit {
			c.pending = buf
			return
		}
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := c.Conn.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			c.pending, c.readErr = buf, err
			return
		}
	}
}

// headerEnd is the index just past the blank line ending the header block, or -1.
func headerEnd(buf []byte) int {
	if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 {
		return i + 4
	}
	if i := bytes.Index(buf, []byte("\n\n")); i >= 0 {
		return i + 2
	}
	return -1
}

func addHostIfMissing(buf []byte, end int) []byte {
	lineEnd := bytes.IndexByte(buf, '\n')
	if lineEnd < 0 || lineEnd >= end {
		return buf
	}
	requestLine := bytes.TrimRight(buf[:lineEnd], "\r")
	if !bytes.HasSuffix(requestLine, []byte(" HTTP/1.1")) {
		return buf // HTTP/1.0 needs no Host; anything else is net/http's to judge
	}
	for line := range bytes.SplitSeq(buf[lineEnd+1:end], []byte("\n")) {
		if len(line) >= 5 && bytes.EqualFold(line[:5], []byte("host:")) {
			return buf
		}
	}
	out := make([]byte, 0, len(buf)+len(InjectedHost)+8)
	out = append(out, buf[:lineEnd+1]...)
	out = append(out, "Host: "+InjectedHost+"\r\n"...)
	return append(out, buf[lineEnd+1:]...)
}

// CloseWrite keeps the TCP half-close visible through the wrapper: net/http sends a FIN this
// way before closing a connection whose request body it refused.
func (c *hostFixConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
