package cli

import (
	"os"

	"github.com/mattn/go-isatty"
)

// The disruption guard protects people, not scripts. A person typing hadown at a terminal gets
// it unless they say --force; a script (no terminal: nerve-tools' check_call, a Kubernetes
// preStop hook, cron) gets what the Python hadown did, the mark written and exit 0, unless it
// asks for the guard with --guard. Real automation calls hadown for an instance that is going
// away whatever the load balancers think, and must not be left in rotation by a refusal.

// guardWanted decides whether the disruption guard runs for a down command.
func guardWanted(e *Env, force, guardFlag bool) bool {
	switch {
	case force:
		return false
	case guardFlag:
		return true
	}
	return e.Interactive
}

// AtTerminal reports whether a person is at the command: its standard input or output is a
// terminal. Anything started by another program without one (ssh host cmd, cron, exec hooks,
// subprocess with pipes) is a script.
func AtTerminal() bool {
	for _, f := range []*os.File{os.Stdin, os.Stdout} {
		if isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()) {
			return true
		}
	}
	return false
}
