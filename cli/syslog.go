package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
)

// sysLogWriteTimeout bounds handing one record to the system log. A daemon that stops reading
// (hung, or stopped under a full disk) leaves its socket's queue full, and a write to it would
// then wait for ever: a maintenance command must not hang on its audit record.
const sysLogWriteTimeout = 2 * time.Second

// sysLogSockets are where a local system log listens, tried in order: journald's and rsyslog's
// /dev/log, then the BSD and macOS places. Datagram sockets first: one record, one datagram.
var sysLogSockets = []struct{ network, path string }{
	{"unixgram", "/dev/log"}, {"unixgram", "/var/run/syslog"}, {"unixgram", "/var/run/log"},
	{"unix", "/dev/log"}, {"unix", "/var/run/syslog"}, {"unix", "/var/run/log"},
}

// SystemLog returns what sends audit records to the local system log under the identifier
// "hacheck", user facility, notice, one datagram per record (a record is never split or glued
// to the next). Where nothing listens the records are dropped without a word: the server's
// watch still logs the change, and a maintenance command must not fail because a host has no
// syslog. A record the system log does not take within sysLogWriteTimeout is an error, and the
// records after it are dropped at once rather than each waiting as long again.
//
// This is a small sender of our own rather than log/syslog: log/syslog's Writer keeps its
// connection to itself and so offers no write deadline.
func SystemLog() func(record string) error {
	s := &sysLogSender{dial: dialSysLog, timeout: sysLogWriteTimeout, tag: "hacheck"}
	return s.send
}

// dialSysLog connects to the first local system log socket that answers; nil when none does.
func dialSysLog(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	for _, s := range sysLogSockets {
		if c, err := d.DialContext(ctx, s.network, s.path); err == nil {
			return c, nil
		}
	}
	return nil, nil
}

// sysLogSender writes records in the local syslog form, "<PRI>Mmm dd hh:mm:ss TAG[PID]: MSG",
// without a hostname: the form journald and rsyslog parse from /dev/log.
type sysLogSender struct {
	dial    func(context.Context) (net.Conn, error)
	timeout time.Duration
	tag     string

	mu     sync.Mutex
	dialed bool
	conn   net.Conn // nil: no system log, or it stopped taking records
	failed error    // why it stopped taking records
}

// sysLogPriority is facility user (1) and severity notice (5): 1*8+5.
const sysLogPriority = 13

func (s *sysLogSender) send(record string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.dialed {
		s.dialed = true
		ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
		c, err := s.dial(ctx)
		cancel()
		if err != nil {
			s.failed = err
		}
		s.conn = c
	}
	if s.conn == nil {
		return s.failed
	}
	msg := fmt.Sprintf("<%d>%s %s[%d]: %s\n", sysLogPriority, time.Now().Format(time.Stamp), s.tag, os.Getpid(), record)
	if err := s.conn.SetWriteDeadline(time.Now().Add(s.timeout)); err != nil {
		return s.stop(err)
	}
	if _, err := s.conn.Write([]byte(msg)); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = fmt.Errorf("not taken within %s; later records are not sent", s.timeout)
		}
		return s.stop(err)
	}
	return nil
}

// stop gives up on the system log for the rest of the command, after err.
func (s *sysLogSender) stop(err error) error {
	s.conn.Close()
	s.conn = nil
	s.failed = fmt.Errorf("system log: %w", err)
	return s.failed
}
