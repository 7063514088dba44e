package cli

import (
	"errors"

	"github.com/hacheck/hacheck/server"
	"github.com/hacheck/hacheck/spool"
)

// Exit codes, documented in the README and the man page.
const (
	exitOK      = 0
	exitDown    = 1 // hastatus: a service is down
	exitFailed  = 1 // a runtime failure
	exitUsage   = 2 // bad flags or names, config errors, missing access to the spool
	exitTimeout = 3 // --wait: not every load balancer reported the new state in time
	exitRefused = 4 // the disruption guard refused; nothing was written
)

// exitCodes is the one table from what a command returned to its exit code: the first row that
// matches wins; an error no row matches is a runtime failure, exit 1. Every error but errDown is
// said on stderr as one line; hastatus has already printed why it exits 1.
var exitCodes = []struct {
	match func(error) bool
	code  int
}{
	{func(err error) bool { return errors.Is(err, errDown) }, exitDown},
	{is[*waitTimeoutError], exitTimeout},
	{is[*refusedError], exitRefused},
	{is[usageError], exitUsage},
	{is[*spool.AccessError], exitUsage},
	{is[*spool.InvalidError], exitUsage},
	{is[*server.ConfigError], exitUsage},
}

func is[T error](err error) bool {
	_, ok := errors.AsType[T](err)
	return ok
}

// exitCode is the exit code of a command that returned err.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	for _, row := range exitCodes {
		if row.match(err) {
			return row.code
		}
	}
	return exitFailed
}
