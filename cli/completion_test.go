package cli

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hacheck/hacheck/internal/testbin"
)

// completeAs runs hacheck as bash's `complete -C` does: the command's name, the word
// being completed and the one before it as arguments, the line and cursor in COMP_LINE and
// COMP_POINT. It returns the completions printed.
func completeAs(t *testing.T, bin, line string, extraEnv ...string) []string {
	t.Helper()
	fields := strings.Fields(line)
	cur, prev := "", fields[len(fields)-1]
	if !strings.HasSuffix(line, " ") {
		cur = prev
		prev = ""
		if len(fields) > 1 {
			prev = fields[len(fields)-2]
		}
	}
	cmd := exec.Command(bin, fields[0], cur, prev)
	cmd.Env = append(os.Environ(), "COMP_LINE="+line, "COMP_POINT="+strconv.Itoa(len(line)), "COMP_TYPE=9", "COMP_KEY=9")
	cmd.Env = append(cmd.Env, extraEnv...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("completing %q: %v", line, err)
	}
	words := strings.Fields(string(out))
	slices.Sort(words)
	return words
}

// TestCompletionScriptInBash loads `hacheck completion bash` into bash and checks that every
// command name is completed by this binary, and that the script names the --path it was given.
func TestCompletionScriptInBash(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	dir := testbin.Dir(t)
	script, err := command(dir, "hacheck", "completion", "bash", "--path", "/usr/bin/hacheck").Output()
	if err != nil {
		t.Fatalf("hacheck completion bash: %v", err)
	}
	out, err := exec.Command(bash, "-c", string(script)+"\ncomplete -p").CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	for _, name := range []string{"hacheck", "hadown", "haup", "hastatus", "halist", "hashowdowned"} {
		want := "complete -C '/usr/bin/hacheck' " + name
		if !strings.Contains(string(out), want+"\n") {
			t.Errorf("bash's complete -p lacks %q:\n%s", want, out)
		}
	}
}

// TestCompletion is what a person at a bash prompt gets after pressing tab.
func TestCompletion(t *testing.T) {
	dir := testbin.Dir(t)
	root := t.TempDir()
	for _, args := range [][]string{{"-r", "x", "web"}, {"-r", "x", "-P", "8080", "api"}, {"--drain", "-r", "x", "cache"}} {
		if out, err := command(dir, "hadown", append([]string{"--spool-root", root}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("hadown: %v: %s", err, out)
		}
	}
	bin := filepath.Join(dir, "hacheck")
	for _, tt := range []struct {
		line string
		env  []string
		want []string
	}{
		{line: "hacheck ", want: []string{"completion", "down", "downed", "list", "serve", "status", "up", "version", "weight"}},
		{line: "hacheck do", want: []string{"down", "downed"}},
		{line: "hacheck down --dr", want: []string{"--drain"}},
		{line: "hadown --f", want: []string{"--for", "--force"}},
		{line: "haup --spool-root " + root + " ", want: []string{"api", "cache", "web"}},
		{line: "haup --spool-root=" + root + " w", want: []string{"web"}},
		{line: "hastatus ", env: []string{"HACHECK_SPOOL_ROOT=" + root}, want: []string{"api", "cache", "web"}},
		{line: "hacheck up --spool-root " + root + " a", want: []string{"api"}},
		{line: "hacheck completion ", want: []string{"bash"}},
		// No spool there: nothing to offer, nothing created.
		{line: "haup --spool-root " + filepath.Join(root, "missing") + " ", want: nil},
	} {
		if got := completeAs(t, bin, tt.line, tt.env...); !slices.Equal(got, tt.want) {
			t.Errorf("completing %q = %q, want %q", tt.line, got, tt.want)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "missing")); !os.IsNotExist(err) {
		t.Errorf("completing created the spool root it was pointed at: %v", err)
	}
}

// TestCompletionPathRefused: the script is evaluated by bash, so a path it would re-parse
// (a space, a quote, a command substitution) is refused instead of printed.
func TestCompletionPathRefused(t *testing.T) {
	runCLI := func(args ...string) (code int, stdout, stderr string) {
		var out, errOut bytes.Buffer
		code = run("hacheck", args, &Env{Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }, Now: time.Now})
		return code, out.String(), errOut.String()
	}
	for _, path := range []string{"/opt/my hacheck", "/usr/bin/$(reboot)", "/x';reboot;'", "relative/hacheck"} {
		code, stdout, stderr := runCLI("completion", "bash", "--path", path)
		if code != exitUsage || stdout != "" || !strings.Contains(stderr, "--path") {
			t.Errorf("--path %q: exit %d, stdout %q, stderr %q", path, code, stdout, stderr)
		}
	}
	if code, stdout, _ := runCLI("completion", "zsh"); code != exitUsage || stdout != "" {
		t.Errorf("completion zsh: exit %d, stdout %q", code, stdout)
	}
}
