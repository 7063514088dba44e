package cli

import (
	"bytes"
	"os"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"github.com/hacheck/hacheck/spool/audit"
)

// logChange records one change made by this command, with who made it: the real uid (who ran
// it, under sudo too) and $SUDO_USER (who asked sudo). The record goes to the system log, which
// outlives the terminal; with -v it is shown on standard error too. The server logs the same
// change again when its watch sees the file change, with the file's owner.
func logChange(e *Env, ch audit.Change) {
	ch.Origin = audit.OriginCLI
	uid := os.Getuid()
	ch.UID = &uid
	ch.SudoUser = e.Getenv("SUDO_USER")
	if e.SysLog != nil {
		var buf bytes.Buffer
		l := zerolog.New(&buf)
		audit.Log(&l, ch)
		if err := e.SysLog(strings.TrimSuffix(buf.String(), "\n")); err != nil {
			e.infof("warning: the system log did not take the record: %v\n", err)
		}
	}
	if !e.verbose {
		return
	}
	w := e.Stderr
	if f, ok := e.Stderr.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
		w = zerolog.ConsoleWriter{Out: f, TimeFormat: time.DateTime}
	}
	l := zerolog.New(w).With().Timestamp().Logger()
	audit.Log(&l, ch)
}
