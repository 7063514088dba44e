package spool

import (
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func newWatchedStore(t *testing.T) (*Store, *fakeClock) {
	t.Helper()
	s, clock := newTestStore(t)
	if err := s.Watch(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if !s.Watching() {
		t.Fatal("Watch succeeded but the store is not watching")
	}
	return s, clock
}

// Every way a mark can change is seen by the very next read, with no waiting.
func TestWatchedStoreSeesEveryChange(t *testing.T) {
	s, clock := newWatchedStore(t)
	root := s.Root()
	steps := []struct {
		name       string
		change     func()
		wantDown   bool
		wantReason string
	}{
		{"nothing yet", func() {}, false, ""},
		{"hadown", func() { mustDown(t, s, "web", 0, "deploy", time.Time{}) }, true, "deploy"},
		{"re-down, new reason", func() { mustDown(t, s, "web", 0, "still deploying", time.Time{}) }, true, "still deploying"},
		{"old tool rewrites in place", func() { writeFile(t, root, "web", "by hand") }, true, "by hand"},
		{"haup", func() { s.Up("web", 0) }, false, ""},
		{"old tool creates a plain file", func() { writeFile(t, root, "web:8080", "instance") }, true, "instance"},
		{"rm by hand", func() { os.Remove(filepath.Join(root, "web:8080")) }, false, ""},
		{"all", func() { mustDown(t, s, "all", 0, "host", time.Time{}) }, true, "host"},
		{"mv all away", func() { os.Rename(filepath.Join(root, "all"), filepath.Join(root, ".all-old")) }, false, ""},
		{"mv it back", func() { os.Rename(filepath.Join(root, ".all-old"), filepath.Join(root, "all")) }, true, "host"},
		{"unparsable rewrite fails closed", func() { writeFile(t, root, "all", `{"expiration": "x"}`) }, true, "unreadable mark, counted as down: mark has a field of the wrong type: json: cannot unmarshal string into Go struct field markJSON.expiration of type float64"},
		{"remove", func() { os.Remove(filepath.Join(root, "all")) }, false, ""},
		{"expiring mark", func() { mustDown(t, s, "web", 0, "short", clock.Now().Add(time.Minute)) }, true, "short"},
		{"expires by the clock alone", func() { clock.Advance(time.Minute) }, false, ""},
	}
	for _, step := range steps {
		step.change()
		m, down := s.Status("web", 8080)
		if down != step.wantDown || m.Reason != step.wantReason {
			t.Fatalf("after %q: Status = %v %q; want %v %q", step.name, down, m.Reason, step.wantDown, step.wantReason)
		}
	}
}

// While readers hammer the snapshot, every write is visible to the next read of the writer.
func TestWatchedStoreFreshUnderConcurrentReaders(t *testing.T) {
	s, _ := newWatchedStore(t)
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				s.Status("web", 80)
			}
		}()
	}
	defer func() { stop.Store(true); wg.Wait() }()
	for i := range 300 {
		reason := "r" + strconv.Itoa(i)
		if i%3 == 2 {
			writeFile(t, s.Root(), "web", reason) // an old tool, in place
		} else {
			mustDown(t, s, "web", 0, reason, time.Time{})
		}
		if m, down := s.Status("web", 80); !down || m.Reason != reason {
			t.Fatalf("write %d: Status = %v %q; want the write just made", i, down, m.Reason)
		}
		if i%5 == 0 {
			s.Up("web", 0)
			if m, down := s.Status("web", 80); down {
				t.Fatalf("up %d: still down with %q", i, m.Reason)
			}
		}
	}
}

// If the root disappears, the store falls back to reading files and stays correct.
func TestWatchedRootRemoved(t *testing.T) {
	s, _ := newWatchedStore(t)
	mustDown(t, s, "web", 0, "before", time.Time{})
	if _, down := s.Status("web", 0); !down {
		t.Fatal("mark not seen")
	}
	if err := os.RemoveAll(s.Root()); err != nil {
		t.Fatal(err)
	}
	if m, down := s.Status("web", 0); down {
		t.Fatalf("root removed, still down: %+v", m)
	}
	if s.Watching() {
		t.Fatal("watch should be reported dead once the root is gone")
	}
	mustDown(t, s, "web", 0, "after", time.Time{})
	if m, down := s.Status("web", 0); !down || m.Reason != "after" {
		t.Fatalf("recreated root not read: %+v %v", m, down)
	}
}

func BenchmarkStatus(b *testing.B) {
	for _, watched := range []bool{false, true} {
		name := "direct"
		if watched {
			name = "watched"
		}
		b.Run(name, func(b *testing.B) {
			s := New(b.TempDir())
			if watched {
				if err := s.Watch(); err != nil {
					b.Fatal(err)
				}
				defer s.Close()
			}
			s.Down("other", 0, "x", time.Time{})
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					s.Status("web", 8080)
				}
			})
		})
	}
}

// inotify says nothing when the root path starts leading to another directory (a mount over
// it, a symlink pointed elsewhere); within a second the store notices and reads the path.
func TestWatchedRootReplaced(t *testing.T) {
	dir := t.TempDir()
	first, second := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	os.Mkdir(first, 0o755)
	os.Mkdir(second, 0o755)
	root := filepath.Join(dir, "spool")
	if err := os.Symlink(first, root); err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{now: time.Unix(1750000000, 0)}
	s := New(root, WithClock(clock.Now))
	if err := s.Watch(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, down := s.Status("web", 0); down {
		t.Fatal("empty spool says down")
	}
	writeFile(t, second, "web", "in the new root")
	os.Remove(root)
	if err := os.Symlink(second, root); err != nil {
		t.Fatal(err)
	}
	clock.Advance(identityCheckInterval)
	if m, down := s.Status("web", 0); !down || m.Reason != "in the new root" {
		t.Fatalf("replaced root not noticed: %+v %v", m, down)
	}
	if s.Watching() {
		t.Fatal("the watch of the old directory must be reported dead")
	}
}

func TestCloseTwice(t *testing.T) {
	s, _ := newWatchedStore(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	mustDown(t, s, "web", 0, "after close", time.Time{})
	if m, down := s.Status("web", 0); !down || m.Reason != "after close" {
		t.Fatalf("a closed store must read files directly: %+v", m)
	}
}
