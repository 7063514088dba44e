package cli

import (
	"bytes"
	"log/syslog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"github.com/hacheck/hacheck/spool/audit"
)

// logChange records one change made by this command, with who made it: the real uid (who ran
// it, under sudo too) and $SUDO_USER (who asked sudo). The record goes to the system log, which
// outlives the terminal; with -v it is shown on standard error too. The server logs the same
// change again when its watch sees the file change, with the file's owner.
func logChange(e *env, ch audit.Change) {
	ch.Origin = audit.OriginCLI
	uid := os.Getuid()
	ch.UID = &uid
	ch.SudoUser = e.getenv("SUDO_USER")
	if e.sysLog != nil {
		var buf bytes.Buffer
		l := zerolog.New(&buf)
		audit.Log(&l, ch)
		e.sysLog(strings.TrimSuffix(buf.String(), "\n"))
	}
	if !e.verbose {
		return
	}
	w := e.stderr
	if f, ok := e.stderr.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
		w = zerolog.ConsoleWriter{Out: f, TimeFormat: time.DateTime}
	}
	l := zerolog.New(w).With().Timestamp().Logger()
	audit.Log(&l, ch)
}

// systemLog returns what sends audit records to the local system log: the /dev/log socket
// that journald and rsyslog serve, under the identifier "hacheck", one datagram per record (a
// record is never split or glued to the next). Where nothing listens the records are dropped
// without a word: the server's watch still logs the change, and a maintenance command must not
// fail because a host has no syslog.
func systemLog() func(record string) {
	var (
		once sync.Once
		w    *syslog.Writer
	)
	return func(record string) {
		once.Do(func() {
			// Network "" is the local socket and the local format (no hostname), which
			// journald and rsyslog both parse.
			var err error
			if w, err = syslog.Dial("", "", syslog.LOG_USER|syslog.LOG_NOTICE, "hacheck"); err != nil {
				w = nil
			}
		})
		if w != nil {
			w.Notice(record)
		}
	}
}
