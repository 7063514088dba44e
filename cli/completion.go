package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/alecthomas/kong"
	"github.com/posener/complete"
	"github.com/willabides/kongplete"

	"github.com/hacheck/hacheck/spool"
)

// Shell completion. `hacheck completion bash` prints a script that makes bash ask this binary
// (`complete -C`) what may follow on a hacheck, hadown, haup, hastatus, halist or hashowdowned
// command line. bash then runs it with COMP_LINE set and the command's name as its first
// argument; run hands that to complete, which answers from the same kong model that parses the
// command line, so completion cannot drift from the commands.

// completionNames are the commands the script completes: hacheck and its multi-call names.
var completionNames = func() []string {
	names := []string{"hacheck"}
	for name := range multiCall {
		names = append(names, name)
	}
	slices.Sort(names[1:])
	return names
}()

type completionCmd struct {
	Shell string `arg:"" enum:"bash" help:"The shell to print the completion script for: bash."`
	Path  string `name:"path" placeholder:"FILE" help:"The hacheck binary the script runs to complete (default: this one). Packages pass /usr/bin/hacheck."`
}

// safePath is what the script can name without quoting: bash evaluates the -C string again.
var safePath = regexp.MustCompile(`^[A-Za-z0-9_./+@-]+$`)

func (c *completionCmd) Run(e *Env) error {
	path := c.Path
	if path == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("finding this binary: %w; name it with --path", err)
		}
		path = exe
	}
	if !filepath.IsAbs(path) || !safePath.MatchString(path) {
		return usageErrorf("completion: --path must be an absolute path of letters, digits and ._+@-/ (got %q)", path)
	}
	_, err := fmt.Fprintf(e.Stdout, "# bash completion for hacheck (hacheck completion bash)\ncomplete -C %s %s\n",
		path, strings.Join(completionNames, " "))
	return err
}

// completing reports whether bash asked this process for completions: COMP_LINE is set and the
// first argument names a command the script completes.
func completing(e *Env, args []string) bool {
	return e.Getenv("COMP_LINE") != "" && len(args) > 0 && slices.Contains(completionNames, filepath.Base(args[0]))
}

// runCompletion prints the completions for the command line in COMP_LINE/COMP_POINT, one a line.
// The command completed is the first argument bash passes: hacheck, or a multi-call name whose
// subcommand is then the root.
func runCompletion(parser *kong.Kong, e *Env, args []string) int {
	name := filepath.Base(args[0])
	root, err := kongplete.Command(parser, kongplete.WithPredictor("marked", markedServices(e)))
	if err != nil {
		fmt.Fprintf(e.Stderr, "%s: completion: %v\n", name, err)
		return exitUsage
	}
	if sub, ok := multiCall[name]; ok {
		root = root.Sub[sub]
	}
	cmp := complete.New(name, root)
	cmp.Out = e.Stdout
	cmp.Complete()
	return exitOK
}

// markedServices predicts the services that have a mark in the spool the command line names
// (--spool-root, else HACHECK_SPOOL_ROOT, else the default): what haup and hastatus are
// usually given. An unreadable spool predicts nothing.
func markedServices(e *Env) complete.Predictor {
	return complete.PredictFunc(func(a complete.Args) []string {
		root := e.Getenv("HACHECK_SPOOL_ROOT")
		if root == "" {
			root = "/var/spool/hacheck"
		}
		for i, arg := range a.Completed {
			if v, ok := strings.CutPrefix(arg, "--spool-root="); ok {
				root = v
			} else if arg == "--spool-root" && i+1 < len(a.Completed) {
				root = a.Completed[i+1]
			}
		}
		marks, err := spool.New(root, spool.WithClock(e.Now)).List()
		if err != nil {
			return nil
		}
		var services []string
		for _, m := range marks {
			if !slices.Contains(services, m.Service) {
				services = append(services, m.Service)
			}
		}
		return services
	})
}
