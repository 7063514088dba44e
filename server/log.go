package server

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
)

// NewLogger returns the logger for log_path: "stdout" or "stderr" get zerolog's console format
// when that stream is a terminal and JSON lines otherwise (journald, pipes); any other value is a
// file path written as JSON lines through a ReopeningFile. verbose selects Debug, else Info.
// The returned Closer also has a Reopen() error method (a no-op for stdout and stderr), which
// SIGHUP should call; closing it never closes stdout or stderr.
func NewLogger(logPath string, verbose bool) (zerolog.Logger, io.Closer, error) {
	level := zerolog.InfoLevel
	if verbose {
		level = zerolog.DebugLevel
	}
	var (
		w      io.Writer
		closer io.Closer
	)
	switch logPath {
	case "stdout", "stderr":
		f := os.Stderr
		if logPath == "stdout" {
			f = os.Stdout
		}
		w, closer = f, stdStream{}
		if isTerminal(f) {
			w = zerolog.ConsoleWriter{Out: f, TimeFormat: time.DateTime}
		}
	default:
		rf, err := OpenReopeningFile(logPath)
		if err != nil {
			return zerolog.Nop(), nil, err
		}
		w, closer = rf, rf
	}
	return zerolog.New(w).Level(level).With().Timestamp().Logger(), closer, nil
}

// isTerminal decides between the console format and JSON lines: only a terminal gets the
// console format; files, pipes, journald and /dev/null get JSON.
func isTerminal(f *os.File) bool { return isatty.IsTerminal(f.Fd()) }

// stdStream is the Closer for stdout and stderr, which outlive every logger.
type stdStream struct{}

func (stdStream) Close() error  { return nil }
func (stdStream) Reopen() error { return nil }

// reopenCheckInterval bounds the cost of noticing a rotation to one stat per second, however
// many lines are logged.
const reopenCheckInterval = time.Second

// ReopeningFile is an io.Writer appending to a path that follows logrotate: when the path has
// been moved away or replaced (it is gone, or names another inode), the next Write at least a
// second after the previous check reopens the path, and Reopen does so at once. It is safe for
// concurrent use; each Write lands whole in one file.
type ReopeningFile struct {
	path string
	now  func() time.Time // injectable so tests need no sleeps

	mu        sync.Mutex
	f         *os.File // nil once closed
	lastCheck time.Time
	ends      lineEnds // of the lines in f
}

// OpenReopeningFile opens (creating it with mode 0640 if needed) path for appending.
func OpenReopeningFile(path string) (*ReopeningFile, error) {
	f, err := openLogFile(path)
	if err != nil {
		return nil, err
	}
	r := &ReopeningFile{path: path, now: time.Now, f: f}
	r.lastCheck = r.now()
	return r, nil
}

// O_APPEND keeps lines whole and ordered even when logrotate's copytruncate empties the file
// under us.
func openLogFile(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o640)
}

// Write appends p to the file, first reopening the path if it was rotated away.
func (r *ReopeningFile) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return 0, fs.ErrClosed
	}
	if now := r.now(); now.Sub(r.lastCheck) >= reopenCheckInterval || now.Before(r.lastCheck) {
		r.lastCheck = now
		if r.moved() {
			// If the path cannot be reopened (directory gone, permissions), keep writing to
			// the old file: a line in a rotated file beats a lost one.
			_ = r.reopenLocked()
		}
	}
	return r.ends.write(r.f, p)
}

// lineEnds keeps each record on a line of its own in a file that refused part of one: a full
// disk takes the first bytes of a line and refuses the rest, and the record written once space
// is back would continue that fragment, making both unreadable as JSON. The fragment is ended
// first, so the record after it is a whole line again (the one cut short is lost, as it would
// have been anyway).
type lineEnds struct {
	torn bool // the last write stopped inside a line
}

func (l *lineEnds) write(w io.Writer, p []byte) (int, error) {
	if l.torn {
		if _, err := w.Write([]byte{'\n'}); err != nil {
			return 0, err // still no room: nothing of p written, still torn
		}
		l.torn = false
	}
	n, err := w.Write(p)
	if n > 0 && n < len(p) && p[n-1] != '\n' {
		l.torn = true
	}
	return n, err
}

// moved reports whether the path no longer names the open file.
func (r *ReopeningFile) moved() bool {
	onDisk, err := os.Stat(r.path)
	if err != nil {
		return true
	}
	open, err := r.f.Stat()
	return err != nil || !os.SameFile(onDisk, open)
}

// Reopen opens the path afresh and switches to it, whether or not it moved (SIGHUP after
// logrotate). On error the old file stays in use.
func (r *ReopeningFile) Reopen() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return fs.ErrClosed
	}
	r.lastCheck = r.now()
	return r.reopenLocked()
}

func (r *ReopeningFile) reopenLocked() error {
	f, err := openLogFile(r.path)
	if err != nil {
		return err
	}
	old := r.f
	r.f, r.ends = f, lineEnds{} // a fragment left in the old file stays there
	return old.Close()
}

// Close closes the file; later Writes fail with fs.ErrClosed. Closing twice is not an error.
func (r *ReopeningFile) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	if errors.Is(err, fs.ErrClosed) {
		return nil
	}
	return err
}
