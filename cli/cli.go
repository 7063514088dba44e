// Package cli is hacheck's command line: every command, what it prints, its exit codes, and the
// one client of the running server's API. Installed under the names haup, hadown, hastatus,
// halist and hashowdowned (symlinks) the binary behaves as the matching subcommand, like the
// Python hacheck's console scripts.
package cli

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/alecthomas/kong"

	"github.com/hacheck/hacheck/internal/buildinfo"
	"github.com/hacheck/hacheck/spool"
)

// multiCall maps the names the binary may be invoked under to the subcommand they stand for.
var multiCall = map[string]string{
	"haup":         "up",
	"hadown":       "down",
	"hastatus":     "status",
	"halist":       "list",
	"hashowdowned": "downed",
}

// Env is everything a command takes from the outside world: main hands it this process's, tests
// their own, so commands run in-process or as subprocesses without touching /etc or the real
// user.
type Env struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	Now            func() time.Time
	// Interactive: a person is at a terminal (see AtTerminal); the disruption guard is on by
	// default for people only.
	Interactive bool
	// SysLog takes one audit record for the system log (see SystemLog); nil drops them.
	SysLog func(record string) error

	// verbose: the command was given -v; what it did is said on stderr (see infof).
	verbose bool
	// notes are infof's lines from before -v was known, said once it is.
	notes []string
}

// infof says on stderr what a command did or skipped, with -v only: on success the spool
// commands print nothing unless asked, as the Python tools did, because scripts call them.
func (e *Env) infof(format string, args ...any) {
	if e.verbose {
		fmt.Fprintf(e.Stderr, format, args...)
	}
}

// outFlags choose what a spool command says about what it did.
type outFlags struct {
	Verbose bool `short:"v" help:"Say what was done on stderr: the audit record, the guard's and --wait's findings."`
}

func (f outFlags) apply(e *Env) {
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

func (f spoolFlags) store(e *Env) *spool.Store { return spool.New(f.SpoolRoot, spool.WithClock(e.Now)) }

// Commands is every command. A new one is a field here (kong's cmd tag, its help line) whose
// type has a Run(*Env) error method, in a file of its own; the errors it returns map to exit
// codes in exitCodes.
type Commands struct {
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

func (versionCmd) Run(e *Env) error {
	fmt.Fprintf(e.Stdout, "hacheck %s\n", buildinfo.String())
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
func run(argv0 string, args []string, e *Env) int {
	name, args := argsFor(argv0, args)
	helpExit := -1
	parser, err := kong.New(&Commands{},
		kong.Name(name),
		kong.Description("hacheck answers HAProxy's health checks from this host's maintenance spool and cached checks of the local services."),
		kong.Writers(e.Stdout, e.Stderr),
		kong.Exit(func(code int) { helpExit = code }),
		kong.Bind(e),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
	)
	if err != nil {
		fmt.Fprintf(e.Stderr, "%s: %v\n", name, err)
		return exitUsage
	}
	if completing(e, args) {
		return runCompletion(parser, e, args)
	}
	ctx, err := parser.Parse(args)
	if helpExit >= 0 { // --help or similar
		return helpExit
	}
	if err != nil {
		fmt.Fprintf(e.Stderr, "%s: %s\n", name, oneLine(err.Error()))
		return exitUsage
	}
	err = ctx.Run(e)
	if err != nil && !errors.Is(err, errDown) {
		fmt.Fprintf(e.Stderr, "%s: %s\n", name, oneLine(err.Error()))
	}
	return exitCode(err)
}

// Main runs the command line args (args[0] is the name the binary was invoked under, which
// picks the command for haup, hadown...) in e and returns the exit code.
func Main(args []string, e Env) int {
	if len(args) == 0 {
		args = []string{"hacheck"}
	}
	return run(args[0], args[1:], &e)
}
