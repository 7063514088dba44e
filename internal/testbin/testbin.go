// Package testbin builds the real hacheck binary for the tests that run it as a subprocess (the
// commands' tests in cli, the end-to-end tests in deploy): the binary from the module's root, as
// installed, not a test binary standing in for it.
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"sync"
	"testing"
)

// Names are the names the binary is installed under: hacheck itself and its multi-call symlinks.
var Names = []string{"hacheck", "haup", "hadown", "hastatus", "halist", "hashowdowned"}

var (
	once     sync.Once
	dir      string
	buildErr error
)

// Race reports whether the calling test binary was built with the race detector; the hacheck
// binary is then built with it too, so a race in a subprocess fails the test as one in-process
// would.
func Race() bool {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range info.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// Dir builds hacheck (once per test process) and returns the directory holding it and the
// symlinks named like the multi-call commands; a failed build fails t. The package's TestMain
// is Main, which removes it after the tests.
func Dir(t testing.TB) string {
	t.Helper()
	if err := build(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Main runs the tests, then removes what Dir built: the TestMain of a package using Dir.
func Main(m *testing.M) {
	code := m.Run()
	if dir != "" {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

func build() error {
	once.Do(func() {
		if dir, buildErr = os.MkdirTemp("", "hacheck-bin-"); buildErr != nil {
			return
		}
		goTool, err := exec.LookPath("go") // go test puts GOROOT/bin first in PATH
		if err != nil {
			buildErr = fmt.Errorf("find the go command: %w", err)
			return
		}
		args := []string{"build", "-o", filepath.Join(dir, Names[0])}
		if Race() {
			args = append(args, "-race")
		}
		if out, err := exec.Command(goTool, append(args, "github.com/hacheck/hacheck")...).CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		for _, name := range Names[1:] {
			if err := os.Symlink(Names[0], filepath.Join(dir, name)); err != nil {
				buildErr = err
				return
			}
		}
	})
	return buildErr
}
