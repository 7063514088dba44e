package spool

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Change is a mark that appeared, was rewritten or disappeared between two readings of the
// root.
type Change struct {
	Service string
	Port    int
	// Old and New are the mark before and after; nil when there was none.
	Old, New *Mark
	// Owner is the uid owning the new file (what the kernel says about who wrote it); -1 when
	// the mark was removed or the owner could not be read.
	Owner int
}

// ChangeWatcher reports every change of the root's marks, whoever made it. It hears of them
// through the store's own inotify watch (watch.go), the one checks read through: while Run
// runs, a waiter takes events off that watch as they come (checks take them too, when they
// are first), so Run wakes on a change rather than when a check happens to ask. Changes its
// own process makes go through Own, so that they are reported once, by the caller, and not a
// second time here.
type ChangeWatcher struct {
	store *Store
	watch *watcher
	owned bool // WatchChanges started the store's watch, and Close ends it

	closeOnce sync.Once
	closed    chan struct{} // closed by Close

	mu   sync.Mutex // serialises readings and Own
	prev Set
}

// WatchChanges starts following the root, which must exist; the marks present now are the
// starting point, not changes. A store not yet watched is watched from now on (Close ends
// that watch again). Run delivers the changes; Close stops.
func (s *Store) WatchChanges() (*ChangeWatcher, error) {
	owned := false
	if !s.Watching() {
		if s.watch != nil {
			return nil, fmt.Errorf("watch %s for changes: the store's watch is closed or the directory went away", s.root)
		}
		if err := s.Watch(); err != nil {
			return nil, fmt.Errorf("watch %s for changes: %w", s.root, err)
		}
		owned = true
	}
	cw := &ChangeWatcher{store: s, watch: s.watch, owned: owned, closed: make(chan struct{})}
	var err error
	if cw.prev, err = cw.read(); err != nil {
		if owned {
			s.Close()
		}
		return nil, fmt.Errorf("watch %s for changes: %w", s.root, err)
	}
	return cw, nil
}

// Close stops Run, which then returns nil. Closing twice is not an error.
func (cw *ChangeWatcher) Close() error {
	var err error
	cw.closeOnce.Do(func() {
		close(cw.closed)
		if cw.owned {
			err = cw.store.Close()
		}
	})
	return err
}

// Run calls report for every change made outside Own, in the order seen, until ctx ends or
// Close is called (nil), or the root itself goes away (an error). Changes in quick succession
// may be seen as one. One Run at a time.
func (cw *ChangeWatcher) Run(ctx context.Context, report func(Change)) error {
	select {
	case <-cw.closed:
		return nil
	default:
	}
	w := cw.watch
	// The waiter takes events off the watch as they come. It is stopped by a read deadline in
	// the past, set after stop: it checks stop after setting its own deadline, so whichever
	// deadline is set last, it ends.
	var stop atomic.Bool
	waiterDone := make(chan error, 1)
	go func() {
		for {
			err := w.file.SetReadDeadline(time.Time{})
			if stop.Load() {
				err = nil
				break
			}
			if err == nil {
				err = w.wait(cw.store)
			}
			if err != nil || w.dead.Load() {
				waiterDone <- err
				return
			}
		}
		waiterDone <- nil
	}()
	defer func() {
		stop.Store(true)
		w.file.SetReadDeadline(time.Unix(1, 0))
		<-waiterDone
	}()

	settleTimer := time.NewTimer(settle)
	settleTimer.Stop()
	for {
		// Wait for the first events, then for the ones that follow within settle: a writer
		// that rewrites a file in place (create or truncate, then write) is seen once, with
		// what it wrote, not once empty and again full.
		for first := true; ; first = false {
			var settled <-chan time.Time
			if !first {
				settleTimer.Reset(settle)
				settled = settleTimer.C
			}
			select {
			case <-ctx.Done():
				return nil
			case <-cw.closed:
				return nil
			case err := <-waiterDone:
				waiterDone <- err // for the deferred stop
				return cw.ended(report, err)
			case <-w.drained:
				if !first {
					settleTimer.Stop()
				}
				if w.dead.Load() {
					return cw.ended(report, nil)
				}
				continue
			case <-settled:
			}
			break
		}
		for _, c := range cw.diff() {
			report(c)
		}
	}
}

// ended is Run's end when the watch ended under it: the store closed its watch (nil), or the
// root went away, reported after the changes that came before.
func (cw *ChangeWatcher) ended(report func(Change), err error) error {
	if cw.watch.isClosed() {
		return nil
	}
	for _, c := range cw.diff() {
		report(c)
	}
	if err != nil {
		return fmt.Errorf("watch %s for changes: %w", cw.store.root, err)
	}
	return fmt.Errorf("watch %s for changes: the directory was removed, moved or replaced", cw.store.root)
}

// settle is how long Run waits for further events after one before it reads the root.
const settle = 20 * time.Millisecond

// Own runs fn, a change this process makes to the mark of (service, port) and reports itself,
// so that Run does not report it again. Changes by other writers in the meantime are still
// reported.
func (cw *ChangeWatcher) Own(service string, port int, fn func() error) error {
	if cw == nil {
		return fn()
	}
	cw.mu.Lock()
	defer cw.mu.Unlock()
	err := fn()
	k := Key{service, port}
	if m, ok := cw.store.Read(service, port); ok {
		cw.prev[k] = m
	} else {
		delete(cw.prev, k)
	}
	return err
}

func (cw *ChangeWatcher) read() (Set, error) {
	marks, err := cw.store.readAll()
	if err != nil {
		return nil, err
	}
	return NewSet(marks...), nil
}

// diff reads the root and returns what changed since the previous reading.
func (cw *ChangeWatcher) diff() []Change {
	cw.mu.Lock()
	defer cw.mu.Unlock()
	now, err := cw.read()
	if err != nil {
		return nil // unreadable for now: the next event reads again
	}
	var changes []Change
	for k, m := range now {
		old, had := cw.prev[k]
		if had && sameMark(old, m) {
			continue
		}
		c := Change{Service: k.Service, Port: k.Port, New: &m, Owner: cw.owner(m.Name())}
		if had {
			c.Old = &old
		}
		changes = append(changes, c)
	}
	for k, old := range cw.prev {
		if _, ok := now[k]; !ok {
			changes = append(changes, Change{Service: k.Service, Port: k.Port, Old: &old, Owner: -1})
		}
	}
	cw.prev = now
	return changes
}

func (cw *ChangeWatcher) owner(name string) int {
	info, err := os.Lstat(cw.store.root + "/" + name)
	if err != nil {
		return -1
	}
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}

// sameMark compares what a mark says, as written: a rewrite with the same content is no change.
func sameMark(a, b Mark) bool {
	if (a.Err == nil) != (b.Err == nil) || a.Err != nil && a.Err.Error() != b.Err.Error() {
		return false
	}
	if a.Err != nil {
		return a.Reason == b.Reason
	}
	x, err1 := a.MarshalContent()
	y, err2 := b.MarshalContent()
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}
