// Package cli is hacheck's command line: every command, what it prints, its exit codes, and the
// one client of the running server's API. Installed under the names haup, hadown, hastatus,
// halist and hashowdowned (symlinks) the binary behaves as the matching subcommand, like the
// Python hacheck's console scripts.
package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/alecthomas/kong"

	"github.com/hacheck/hacheck/internal/buildinfo"
	"github.com/hacheck/hacheck/server"
	"github.com/hacheck/hacheck/spool"
)

// Exit codes, documented in the README.
const (
	exitOK    = 0
	exitDown  = 1 // hastatus: a service is down; also a runtime failure
	exitUsage = 2 // bad flags or names, config errors, missing access to the spool
)

// multiCall maps the names the binary may be invoked under to the subcommand they stand for.
var multiCall = map[string]string{
	"haup":         "up",
	"hadown":       "down",
	"hastatus":     "status",
	"halist":       "list",
	"hashowdowned": "downed",
}

// env is everything a command takes from the outside world, so tests can run commands in-process
// or as subprocesses without touching /etc or the real user.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	now            func() time.Time
	// interactive: a person is at a terminal (see atTerminal); the disruption guard is on by
	// default for people only.
	interactive bool
	// sysLog takes one audit record for the system log; nil drops them.
	sysLog func(record string)
	// verbose: the command was given -v; what it did is said on stderr (see infof).
	verbose bool
	// notes are infof's lines from before -v was known, said once it is.
	notes []string
}

// infof says on stderr what a command did or skipped, with -v only: on success the spool
// commands print nothing unless asked, as the Python tools did, because scripts call them.
func (e *env) infof(format string, args ...any) {
	if e.verbose {
		fmt.Fprintf(e.stderr, format, args...)
	}
}

// outFlags choose what a spool command says about what it did.
type outFlags struct {
	Verbose bool `short:"v" help:"Say what was done on stderr: the audit record, the guard's and --wait's findings."`
}

func (f outFlags) apply(e *env) {
	e.verbose = f.Verbose
	for _, n := range e.notes {
		e.infof("%s\n", n)
	}
	e.notes = nil
}

// spoolFlags is the spool location every spool command shares.
type spoolFlags struct {
	SpoolRoot string `name:"spool-root" default:"/var/spool/hacheck" help:"Directory holding the maintenance marks." env:"HACHECK_SPOOL_ROOT"`
}

func (f spoolFlags) store(e *env) *spool.Store { return spool.New(f.SpoolRoot, spool.WithClock(e.now)) }

// cli is every command. A new one is a field here (kong's cmd tag, its help line) whose type has
// a Run(*env) error method, in a cmd_*.go file of its own; errors it returns map to exit codes in
// run.
type cli struct {
	Serve      serveCmd      `cmd:"" default:"withargs" help:"Run the health-check server (the default command)."`
	Up         upCmd         `cmd:"" help:"Remove maintenance marks (haup). Idempotent."`
	Down       downCmd       `cmd:"" help:"Mark services down for maintenance (hadown)."`
	Status     statusCmd     `cmd:"" help:"Show whether services are up or down (hastatus); exit 1 if any is down."`
	Downed     downedCmd     `cmd:"" help:"List every current mark with its reason, age and expiry (hashowdowned)."`
	List       listCmd       `cmd:"" help:"List services the running server checked recently (halist)."`
	Weight     weightCmd     `cmd:"" help:"Set a service's share of its load-balancer weight, e.g. 30%, answered by the agent check."`
	Version    versionCmd    `cmd:"" help:"Print the version."`
	Completion completionCmd `cmd:"" help:"Print a shell completion script: eval \"$(hacheck completion bash)\"."`
}

type versionCmd struct{}

func (versionCmd) Run(e *env) error {
	fmt.Fprintf(e.stdout, "hacheck %s\n", buildinfo.String())
	return nil
}

// usageError is bad input from the command line: exit 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func roundDuration(d time.Duration) time.Duration {
	if d < 0 {
		d = 0
	}
	return d.Round(time.Second)
}

func buildVersion() string { return buildinfo.Version() }

// argsFor puts the subcommand a multi-call name stands for in front of the arguments.
func argsFor(argv0 string, args []string) (name string, out []string) {
	base := filepath.Base(argv0)
	if sub, ok := multiCall[base]; ok {
		return base, append([]string{sub}, args...)
	}
	return "hacheck", args
}

// run is main without the process: it returns the exit code.
func run(argv0 string, args []string, e *env) int {
	name, args := argsFor(argv0, args)
	exitCode := -1
	parser, err := kong.New(&cli{},
		kong.Name(name),
		kong.Description("hacheck answers HAProxy's health checks from this host's maintenance spool and cached checks of the local services."),
		kong.Writers(e.stdout, e.stderr),
		kong.Exit(func(code int) { exitCode = code }),
		kong.Bind(e),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
	)
	if err != nil {
		fmt.Fprintf(e.stderr, "%s: %v\n", name, err)
		return exitUsage
	}
	if completing(e, args) {
		return runCompletion(parser, e, args)
	}
	ctx, err := parser.Parse(args)
	if exitCode >= 0 { // --help or similar
		return exitCode
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "%s: %s\n", name, oneLine(err.Error()))
		return exitUsage
	}
	err = ctx.Run(e)
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errDown):
		return exitDown
	}
	var timedOut *waitTimeoutError
	var refused *refusedError
	switch {
	case errors.As(err, &timedOut):
		fmt.Fprintf(e.stderr, "%s: %s\n", name, oneLine(err.Error()))
		return exitTimeout
	case errors.As(err, &refused):
		fmt.Fprintf(e.stderr, "%s: %s\n", name, oneLine(err.Error()))
		return exitRefused
	}
	fmt.Fprintf(e.stderr, "%s: %s\n", name, oneLine(err.Error()))
	var usage usageError
	var access *spool.AccessError
	var cfg *server.ConfigError
	var invalid *spool.InvalidError
	if errors.As(err, &usage) || errors.As(err, &access) || errors.As(err, &cfg) || errors.As(err, &invalid) {
		return exitUsage
	}
	return exitDown
}

// Main runs the command line args (args[0] is the name the binary was invoked under) in this
// process's environment and returns the exit code.
func Main(args []string) int {
	return run(args[0], args[1:], &env{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, now: time.Now,
		interactive: atTerminal(), sysLog: systemLog()})
}
