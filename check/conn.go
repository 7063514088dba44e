package check

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// localConn is a connection to 127.0.0.1:<port> whose every read and write is bound by the
// check's context: its deadline becomes the socket's, and a cancelled context (shutdown)
// unblocks a read at once.
type localConn struct {
	net.Conn
	stop func() bool
}

// dialLocal connects to 127.0.0.1:port under ctx. The returned connection must be closed.
func dialLocal(ctx context.Context, d *net.Dialer, port int) (*localConn, error) {
	conn, err := d.DialContext(ctx, "tcp", localAddr(port))
	if err != nil {
		return nil, err
	}
	if deadline, ok := ctx.Deadline(); ok {
		// A SetDeadline error means the socket is already unusable; the first read says so.
		_ = conn.SetDeadline(deadline)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	return &localConn{Conn: conn, stop: stop}, nil
}

// Close stops watching the context and closes the socket.
func (c *localConn) Close() error {
	c.stop()
	return c.Conn.Close()
}

// tooLongError is what a cappedReader returns once its cap is used up.
type tooLongError struct{ limit int64 }

func (e *tooLongError) Error() string { return fmt.Sprintf("reply longer than %d bytes", e.limit) }

// cappedReader passes through at most limit bytes of r and then fails with *tooLongError, so
// that a service streaming an endless reply is cut off instead of buffered until the deadline.
type cappedReader struct {
	r     io.Reader
	left  int64
	limit int64
}

func newCappedReader(r io.Reader, limit int64) *cappedReader {
	return &cappedReader{r: r, left: limit, limit: limit}
}

func (c *cappedReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, &tooLongError{limit: c.limit}
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	return n, err
}

// maxQuoted bounds how much of an upstream's reply a message quotes.
const maxQuoted = 200

// quoteReply quotes what an upstream sent for a one-line message: control characters escaped,
// cut at maxQuoted bytes with "..." after the closing quote when cut.
func quoteReply(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:maxQuoted]) + "..."
}

// maxLine bounds a message built from what an upstream sent.
const maxLine = 1024

// oneLine makes a message built from an upstream's text safe as a one-line answer and log
// field: control characters become '?', and it is cut at maxLine bytes.
func oneLine(s string) string {
	cut := len(s) > maxLine
	if cut {
		s = s[:maxLine]
	}
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c == 0x7f {
			b[i] = '?'
		}
	}
	if cut {
		return string(b) + "..."
	}
	return string(b)
}
