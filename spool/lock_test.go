package spool

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// holdLock takes the writers' lock on root as another writer would, through its own open file
// description: flock conflicts between descriptions, so within one process this is exactly
// what another process holding it looks like.
func holdLock(t *testing.T, root string) (release func()) {
	t.Helper()
	d, err := os.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(d.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	return func() { d.Close() }
}

// While another writer holds the lock on the root, nothing is written or removed; a holder that
// never lets go makes writers fail after their wait, with one line naming it, not hang.
func TestWritersRespectTheDirectoryLock(t *testing.T) {
	s, _ := newTestStore(t)
	mustDown(t, s, "api", 0, "before", time.Time{})
	s.lockWait = 200 * time.Millisecond
	release := holdLock(t, s.Root())
	want := "cannot lock " + s.Root() + ": another process has held its lock for over 200ms (pid " + strconv.Itoa(os.Getpid()) + ")"
	if _, err := s.Down("web", 0, "r", time.Time{}); err == nil || err.Error() != want {
		t.Fatalf("Down under a held lock: %v; want %q", err, want)
	}
	if _, err := s.Up("api", 0); err == nil || err.Error() != want {
		t.Fatalf("Up under a held lock: %v; want %q", err, want)
	}
	entries, _ := os.ReadDir(s.Root())
	if len(entries) != 1 || entries[0].Name() != "api" {
		t.Fatalf("the root changed under a held lock: %v", entries)
	}
	release()
	mustDown(t, s, "web", 0, "after", time.Time{})
	if removed, err := s.Up("api", 0); err != nil || !removed {
		t.Fatalf("Up after the release: %v, %v", removed, err)
	}
}

// What older versions and crashed writers left in the root goes with the next write; a temp file
// as young as a running writer's stays. Directories under those names are not removed.
func TestWritesTidyTheRoot(t *testing.T) {
	s, clock := newTestStore(t)
	writeFile(t, s.Root(), legacyLockName, "")
	writeFile(t, s.Root(), tempPrefix+"web-stale", `{"reason": "ha`)
	writeFile(t, s.Root(), tempPrefix+"web-running", `{"reason": "ha`)
	if err := os.Mkdir(s.Root()+"/"+tempPrefix+"dir", 0o755); err != nil {
		t.Fatal(err)
	}
	old := clock.Now().Add(-2 * staleTempAge)
	for _, name := range []string{tempPrefix + "web-stale", tempPrefix + "dir"} {
		if err := os.Chtimes(s.Root()+"/"+name, old, old); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chtimes(s.Root()+"/"+tempPrefix+"web-running", clock.Now(), clock.Now()); err != nil {
		t.Fatal(err)
	}
	mustDown(t, s, "web", 0, "r", time.Time{})
	entries, _ := os.ReadDir(s.Root())
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, " "); got != tempPrefix+"dir "+tempPrefix+"web-running web" {
		t.Fatalf("root after a write: %s", got)
	}
}

// The server removes an older version's lock file when it prepares the root.
func TestEnsureRootRemovesTheLegacyLock(t *testing.T) {
	s, _ := newTestStore(t)
	writeFile(t, s.Root(), legacyLockName, "")
	if err := s.EnsureRoot(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(s.Root() + "/" + legacyLockName); !os.IsNotExist(err) {
		t.Fatalf("%s is still there: %v", legacyLockName, err)
	}
}
