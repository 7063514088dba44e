package cli

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hacheck/hacheck/internal/testbin"
	"github.com/hacheck/hacheck/spool"
)

// Many hadown/haup processes and in-process writers at once, on a root an older version left
// its lock file and a crashed write's temp file in: afterwards the root holds marks and nothing
// else, every mark that was only ever written is there and whole, and every other one is
// either gone or whole.
func TestConcurrentWritersLeaveOnlyMarks(t *testing.T) {
	dir := testbin.Dir(t)
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, ".hacheck.lock"), nil, 0o640); err != nil {
		t.Fatal(err)
	}
	crashed := filepath.Join(root, ".hacheck-tmp-web-0123456789abcdef")
	if err := os.WriteFile(crashed, []byte(`{"reason": "half`), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(crashed, old, old); err != nil {
		t.Fatal(err)
	}

	kept := []string{"k0", "k1", "k2", "k3"} // only ever downed
	churned := []string{"c0", "c1", "c2"}    // downed and upped
	writers := map[string]map[string]bool{}  // file name -> reasons written to it
	var mu sync.Mutex
	wrote := func(name, reason string) {
		mu.Lock()
		defer mu.Unlock()
		if writers[name] == nil {
			writers[name] = map[string]bool{}
		}
		writers[name][reason] = true
	}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 40 {
		var args []string
		switch {
		case i%4 == 3:
			args = []string{"haup", churned[i%3], churned[(i+1)%3]}
		case i%4 == 2:
			reason := fmt.Sprintf("process %d", i)
			args = []string{"hadown", "-r", reason, "-P", "8080", churned[i%3], kept[i%4]}
			wrote(churned[i%3]+":8080", reason)
			wrote(kept[i%4]+":8080", reason)
		default:
			reason := fmt.Sprintf("process %d", i)
			args = []string{"hadown", "-r", reason, kept[i%4], churned[i%3]}
			wrote(kept[i%4], reason)
			wrote(churned[i%3], reason)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := command(dir, args[0], append([]string{"--spool-root", root}, args[1:]...)...)
			if out, err := cmd.CombinedOutput(); err != nil {
				errs <- fmt.Errorf("%v: %v: %s", args, err, out)
			}
		}()
	}
	store := spool.New(root)
	for g := range 8 {
		reason := fmt.Sprintf("goroutine %d", g)
		wrote(kept[g%4]+":9090", reason)
		wrote(churned[g%3], reason)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				if _, err := store.Down(kept[g%4], 9090, reason, time.Time{}); err != nil {
					errs <- err
				}
				if _, err := store.Down(churned[g%3], 0, reason, time.Time{}); err != nil {
					errs <- err
				}
				if _, err := store.Up(churned[(g+1)%3], 0); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	present := map[string]bool{}
	for _, e := range entries {
		name := e.Name()
		if _, _, ok := spool.ParseFileName(name); !ok || !e.Type().IsRegular() {
			t.Errorf("the root holds %q (%v), which is not a mark", name, e.Type())
			continue
		}
		present[name] = true
		data, err := os.ReadFile(filepath.Join(root, name))
		var content struct {
			Reason   *string  `json:"reason"`
			Creation *float64 `json:"creation"`
		}
		if err != nil || json.Unmarshal(data, &content) != nil || content.Reason == nil || content.Creation == nil {
			t.Errorf("%s is torn: %q (%v)", name, data, err)
			continue
		}
		if !writers[name][*content.Reason] {
			t.Errorf("%s holds %q, which nobody wrote to it", name, *content.Reason)
		}
	}
	for name := range writers {
		service, _, _ := spool.ParseFileName(name)
		if strings.HasPrefix(service, "k") && !present[name] {
			t.Errorf("mark %s, never removed, is missing", name)
		}
	}
}

// Odd entries under a mark's name, through the CLI: hastatus and hashowdowned show them down
// with the reason naming what they are, haup refuses in one line and leaves them.
func TestOddEntriesThroughTheCLI(t *testing.T) {
	tests := []struct {
		kind   string
		make   func(path string) error
		reason string
	}{
		{"symlink", func(p string) error { return os.Symlink("/etc/passwd", p) }, "symlink in the spool, not followed"},
		{"FIFO", func(p string) error { return syscall.Mkfifo(p, 0o644) }, "FIFO in the spool, not read"},
		{"directory", func(p string) error { return os.Mkdir(p, 0o755) }, "directory in the spool, not read"},
		{"socket", func(p string) error {
			l, err := net.ListenUnix("unix", &net.UnixAddr{Name: p, Net: "unix"})
			if err == nil {
				l.SetUnlinkOnClose(false)
				l.Close()
			}
			return err
		}, "socket in the spool, not read"},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			r := newRunner(t)
			path := filepath.Join(r.root, "web:8080")
			if err := tt.make(path); err != nil {
				t.Fatal(err)
			}
			if res := r.run("hastatus", "-P", "8080", "web"); res.code != 1 || res.stdout != "DOWN\tweb\t"+tt.reason+"\n" {
				t.Fatalf("hastatus = %+v", res)
			}
			if res := r.run("hastatus", "web"); res.code != 0 {
				t.Fatalf("the whole service must stay up: %+v", res)
			}
			if res := r.run("hashowdowned"); res.code != 0 || !strings.HasPrefix(res.stdout, "web\tport=8080\t"+tt.reason+"\t") {
				t.Fatalf("hashowdowned = %+v", res)
			}
			res := r.run("haup", "-P", "8080", "web")
			want := "haup: " + path + " is a " + tt.kind + ", not a mark file: left alone, remove it by hand if it should go\n"
			if res.code != 1 || res.stderr != want {
				t.Fatalf("haup = %+v, want exit 1 and %q", res, want)
			}
			if _, err := os.Lstat(path); err != nil {
				t.Fatalf("haup removed it: %v", err)
			}
		})
	}
}
