package spool

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// changeEvent is what the tests compare: which mark, what it became.
type changeEvent struct {
	name   string
	before string // reason before; "" = no mark
	after  string // reason after; "" = removed
}

func TestChangeWatcherReportsOtherWriters(t *testing.T) {
	root := t.TempDir()
	s := New(root)
	if _, err := s.Down("old", 0, "there before", time.Time{}); err != nil {
		t.Fatal(err)
	}
	cw, err := s.WatchChanges()
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan Change, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cw.Run(ctx, func(c Change) { events <- c }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run after cancel: %v", err)
		}
	})

	next := func(t *testing.T) changeEvent {
		t.Helper()
		select {
		case c := <-events:
			ev := changeEvent{name: FileName(c.Service, c.Port)}
			if c.Old != nil {
				ev.before = c.Old.Reason
			}
			if c.New != nil {
				ev.after = c.New.Reason
				if c.Owner != os.Getuid() {
					t.Errorf("owner of %s = %d, want %d", ev.name, c.Owner, os.Getuid())
				}
			}
			return ev
		case <-time.After(10 * time.Second):
			t.Fatal("no change reported within 10s")
			return changeEvent{}
		}
	}
	steps := []struct {
		name string
		do   func() error
		want changeEvent
	}{
		{"a new mark", func() error { _, err := s.Down("web", 8080, "disk", time.Time{}); return err }, changeEvent{"web:8080", "", "disk"}},
		{"a rewrite", func() error { _, err := s.Down("web", 8080, "disk swap", time.Time{}); return err }, changeEvent{"web:8080", "disk", "disk swap"}},
		// Written whole (temp file and rename) so that the test does not depend on how fast an
		// in-place write follows its create.
		{"a plain-text file from an old tool", func() error {
			tmp := filepath.Join(root, ".legacy.tmp")
			if err := os.WriteFile(tmp, []byte("by hand\n"), 0o644); err != nil {
				return err
			}
			return os.Rename(tmp, filepath.Join(root, "legacy"))
		}, changeEvent{"legacy", "", "by hand"}},
		{"a removal", func() error { _, err := s.Up("old", 0); return err }, changeEvent{"old", "there before", ""}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if err := st.do(); err != nil {
				t.Fatal(err)
			}
			if got := next(t); got != st.want {
				t.Fatalf("change = %+v, want %+v", got, st.want)
			}
		})
	}

	t.Run("own changes are not reported", func(t *testing.T) {
		if err := cw.Own("mine", 0, func() error { _, err := s.Down("mine", 0, "by the server", time.Time{}); return err }); err != nil {
			t.Fatal(err)
		}
		// Another writer's change after it: the first one reported must be that one.
		if _, err := s.Up("legacy", 0); err != nil {
			t.Fatal(err)
		}
		if got, want := next(t), (changeEvent{"legacy", "by hand", ""}); got != want {
			t.Fatalf("change = %+v, want %+v (the own change must not be reported)", got, want)
		}
	})
}

func TestChangeWatcherRootRemoved(t *testing.T) {
	root := filepath.Join(t.TempDir(), "spool")
	if err := os.Mkdir(root, 0o750); err != nil {
		t.Fatal(err)
	}
	cw, err := New(root).WatchChanges()
	if err != nil {
		t.Fatal(err)
	}
	defer cw.Close()
	done := make(chan error, 1)
	go func() { done <- cw.Run(context.Background(), func(Change) {}) }()
	if err := os.Remove(root); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Run returned nil after the root was removed, want an error saying so")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of the root's removal")
	}
}

// A watcher closed by its owner, before Run starts or while it waits, or by its context, is
// stopped, not failed: Run returns nil whichever call on the closed descriptor noticed.
func TestChangeWatcherStopsWithoutError(t *testing.T) {
	tests := []struct {
		name string
		stop func(cw *ChangeWatcher, cancel context.CancelFunc, started <-chan struct{})
	}{
		{"closed before Run", nil},
		{"closed while Run waits", func(cw *ChangeWatcher, _ context.CancelFunc, started <-chan struct{}) {
			<-started
			cw.Close()
		}},
		{"context ended while Run waits", func(_ *ChangeWatcher, cancel context.CancelFunc, started <-chan struct{}) {
			<-started
			cancel()
		}},
		{"context ended, then closed", func(cw *ChangeWatcher, cancel context.CancelFunc, started <-chan struct{}) {
			<-started
			cancel()
			cw.Close()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cw, err := New(t.TempDir()).WatchChanges()
			if err != nil {
				t.Fatal(err)
			}
			defer cw.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.stop == nil {
				if err := cw.Close(); err != nil {
					t.Fatal(err)
				}
			}
			started := make(chan struct{})
			done := make(chan error, 1)
			go func() {
				close(started)
				done <- cw.Run(ctx, func(c Change) { t.Errorf("unexpected change %+v", c) })
			}()
			if tt.stop != nil {
				tt.stop(cw, cancel, started)
			}
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run = %v, want nil", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return within 10s of being stopped")
			}
		})
	}
}

func TestChangeWatcherNeedsRoot(t *testing.T) {
	if _, err := New(filepath.Join(t.TempDir(), "missing")).WatchChanges(); err == nil {
		t.Fatal("WatchChanges on a missing root succeeded")
	}
}

// inotifyInstances counts this process's inotify descriptors.
func inotifyInstances(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	n := 0
	for _, e := range entries {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && target == "anon_inode:inotify" {
			n++
		}
	}
	return n
}

// The checks' snapshot and the change watcher hear of changes through one inotify watch, and
// the changes a check takes off it first still reach the watcher: a change read by a check at
// once, before the watcher can, is reported all the same, every time.
func TestChangeWatcherSharesTheChecksWatch(t *testing.T) {
	before := inotifyInstances(t)
	s := New(t.TempDir())
	if err := s.Watch(); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cw, err := s.WatchChanges()
	if err != nil {
		t.Fatal(err)
	}
	defer cw.Close()
	events := make(chan Change, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cw.Run(ctx, func(c Change) { events <- c }) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run after cancel: %v", err)
		}
	}()
	if got := inotifyInstances(t) - before; got != 1 {
		t.Errorf("%d inotify instances for the store and its change watcher, want 1", got)
	}
	for i := range 20 {
		reason := "change " + strconv.Itoa(i)
		if _, err := s.Down("web", 0, reason, time.Time{}); err != nil {
			t.Fatal(err)
		}
		if m, down := s.Status("web", 0); !down || m.Reason != reason {
			t.Fatalf("check after %q: %v %q", reason, down, m.Reason)
		}
		select {
		case c := <-events:
			if c.New == nil || c.New.Reason != reason {
				t.Fatalf("reported %+v, want the mark %q", c, reason)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%q, taken by a check first, not reported within 10s", reason)
		}
	}
}

// Closing the store's watch under a running change watcher stops it without an error.
func TestChangeWatcherStopsWithTheStore(t *testing.T) {
	s := New(t.TempDir())
	if err := s.Watch(); err != nil {
		t.Fatal(err)
	}
	cw, err := s.WatchChanges()
	if err != nil {
		t.Fatal(err)
	}
	defer cw.Close()
	done := make(chan error, 1)
	go func() { done <- cw.Run(context.Background(), func(Change) {}) }()
	s.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of the store's Close")
	}
}
