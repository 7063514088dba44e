package spool

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
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

// ChangeWatcher reports every change of the root's marks, whoever made it. It keeps its own
// inotify watch, apart from the one checks read through (watch.go), because it must wake up
// on a change rather than be asked by a check. Changes its own process makes go through Own,
// so that they are reported once, by the caller, and not a second time here.
type ChangeWatcher struct {
	store *Store
	file  *os.File // the inotify descriptor, read through the runtime's poller
	// closed is set before file is closed. Run cannot tell a close from the error it causes:
	// a Read on the closed file says os.ErrClosed, but a SetReadDeadline says "use of closed
	// file", an error no exported value matches.
	closed atomic.Bool

	mu   sync.Mutex // serialises readings and Own
	prev Set
}

// WatchChanges starts following the root, which must exist; the marks present now are the
// starting point, not changes. Run delivers the changes; Close stops.
func (s *Store) WatchChanges() (*ChangeWatcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("watch %s for changes: inotify: %w", s.root, err)
	}
	if _, err := unix.InotifyAddWatch(fd, s.root, watchMask); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("watch %s for changes: %w", s.root, err)
	}
	cw := &ChangeWatcher{store: s, file: os.NewFile(uintptr(fd), "inotify:"+s.root)}
	if cw.prev, err = cw.read(); err != nil {
		cw.file.Close()
		return nil, fmt.Errorf("watch %s for changes: %w", s.root, err)
	}
	return cw, nil
}

// Close stops Run, which then returns nil. Closing twice is not an error.
func (cw *ChangeWatcher) Close() error {
	if cw.closed.Swap(true) {
		return nil
	}
	return cw.file.Close()
}

// Run calls report for every change made outside Own, in the order seen, until ctx ends or
// Close is called (nil), or the root itself goes away (an error). Changes in quick succession
// may be seen as one.
func (cw *ChangeWatcher) Run(ctx context.Context, report func(Change)) error {
	stop := context.AfterFunc(ctx, func() { cw.Close() })
	defer stop()
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		// Block for the first event, then take the ones that follow within settle: a writer
		// that rewrites a file in place (create or truncate, then write) is seen once, with
		// what it wrote, not once empty and again full.
		gone := false
		for first := true; ; first = false {
			deadline := time.Time{}
			if !first {
				deadline = time.Now().Add(settle)
			}
			err := cw.file.SetReadDeadline(deadline)
			n := 0
			if err == nil {
				n, err = cw.file.Read(buf)
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil && cw.closed.Load() || errors.Is(err, os.ErrClosed) || errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("watch %s for changes: %w", cw.store.root, err)
			}
			gone = gone || rootGone(buf[:n])
		}
		for _, c := range cw.diff() {
			report(c)
		}
		if gone {
			return fmt.Errorf("watch %s for changes: the directory was removed or moved", cw.store.root)
		}
	}
}

// settle is how long Run waits for further events after one before it reads the root.
const settle = 20 * time.Millisecond

// rootGone reports whether the events in buf say the watched directory itself went away.
func rootGone(buf []byte) bool {
	for off := 0; off+unix.SizeofInotifyEvent <= len(buf); {
		// struct inotify_event: wd int32, mask uint32, cookie uint32, len uint32, name.
		mask := binary.NativeEndian.Uint32(buf[off+4:])
		if mask&(unix.IN_IGNORED|unix.IN_DELETE_SELF|unix.IN_MOVE_SELF|unix.IN_UNMOUNT) != 0 {
			return true
		}
		off += unix.SizeofInotifyEvent + int(binary.NativeEndian.Uint32(buf[off+12:]))
	}
	return false
}

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
	out := make(Set, len(marks))
	for _, m := range marks {
		out[m.Key()] = m
	}
	return out, nil
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
