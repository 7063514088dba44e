package spool

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// (TIOCINQ is FIONREAD on Linux: how many bytes of events are queued.)
//
// The server asks the spool on every check request, thousands of times a second. Opening the
// three candidate files each time costs three path lookups; instead, a watched store keeps a
// parsed snapshot of the root and an inotify watch on it, and each request asks the kernel
// (one non-consuming FIONREAD ioctl) whether anything changed since.
//
// Why this never serves a stale answer: inotify queues an event inside the writer's own
// syscall (rename, unlink, write, chmod), before that syscall returns. So when a request
// starts after a write finished, the write's event is either still queued (FIONREAD > 0: the
// request refreshes) or was drained by a refresh, which clears the snapshot before draining and
// stores the new one, read from disk after draining. A request that sees no queued event and a
// non-nil snapshot therefore sees a snapshot at least as new as every finished write.
// Events are taken off the watch only by refresh, whether a check or the ChangeWatcher's waiter
// (changes.go) takes them, so the argument holds with both reading the one watch.
//
// Not cheaper alternatives that look equivalent: a zero-timeout epoll_wait on an epoll set
// holding the inotify descriptor costs a third less, but its lockless "anything ready?" check
// can answer no while another thread's epoll_wait has the ready list moved aside (a known,
// unfixed kernel race: "eventpoll: Fix epoll_wait() report false negative"), and checks
// asking at once from several threads are this server's normal state. ppoll with a zero
// timeout is exact but costs more than the ioctl. FIONREAD counts the queue under the group's
// lock.

const watchMask = unix.IN_CREATE | unix.IN_DELETE | unix.IN_MODIFY | unix.IN_ATTRIB | unix.IN_CLOSE_WRITE |
	unix.IN_MOVED_FROM | unix.IN_MOVED_TO | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR

type snapshot struct {
	marks Set
}

type watcher struct {
	fd int
	// file is fd for the runtime's poller, through which a ChangeWatcher waits for events
	// (wait); checks never wait, they ask FIONREAD. It owns fd: Close closes it.
	file   *os.File
	mu     sync.Mutex // serialises refreshes and Close
	closed bool       // guarded by mu
	snap   atomic.Pointer[snapshot]
	// drained gets a token whenever a refresh took events off the watch, or found it dead:
	// whoever took them (a check or the ChangeWatcher's waiter), the ChangeWatcher hears of it.
	drained chan struct{}
	// dead is set when the watch no longer describes the root: the kernel dropped it (root
	// deleted, moved or unmounted) or the root path now leads to another directory. The store
	// then reads files directly, which is always correct, only slower.
	dead atomic.Bool
	// The watched directory's identity. inotify says nothing when something is mounted over
	// the root, a symlinked root is pointed elsewhere or a parent directory is replaced, so
	// the path is compared with it once a second (nextIdentityCheck, unix nanoseconds).
	dev, ino          uint64
	nextIdentityCheck atomic.Int64
}

// identityCheckInterval bounds how long a replaced root can go unnoticed. Checking on every
// request would cost a path lookup each, which is what the watch exists to avoid.
const identityCheckInterval = time.Second

// Watch makes reads go through an inotify-backed snapshot of the root. The root must exist.
// Without Watch (the CLI's case), every read opens the files. Close releases the watch.
func (s *Store) Watch() error {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("watch %s: inotify: %w", s.root, err)
	}
	if _, err := unix.InotifyAddWatch(fd, s.root, watchMask); err != nil {
		unix.Close(fd)
		return fmt.Errorf("watch %s: %w", s.root, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(s.root, &st); err != nil {
		unix.Close(fd)
		return fmt.Errorf("watch %s: %w", s.root, err)
	}
	s.watch = &watcher{fd: fd, file: os.NewFile(uintptr(fd), "inotify:"+s.root), dev: st.Dev, ino: st.Ino,
		drained: make(chan struct{}, 1)}
	return nil
}

// Watching reports whether reads are served from a live inotify snapshot.
func (s *Store) Watching() bool { return s.watch != nil && !s.watch.dead.Load() }

// Close releases the watch, if any; reads then open files directly. It may be called twice.
func (s *Store) Close() error {
	w := s.watch
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	w.dead.Store(true)
	return w.file.Close()
}

func (w *watcher) isClosed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.closed
}

// current returns a snapshot no older than the last finished write, or nil when the store must
// read files directly.
func (w *watcher) current(s *Store, now time.Time) *snapshot {
	if w.dead.Load() {
		return nil
	}
	if n := now.UnixNano(); n >= w.nextIdentityCheck.Load() {
		w.nextIdentityCheck.Store(n + int64(identityCheckInterval))
		var st unix.Stat_t
		if err := unix.Stat(s.root, &st); err != nil || st.Dev != w.dev || st.Ino != w.ino {
			w.dead.Store(true)
			return nil
		}
	}
	if pending, err := queuedBytes(w.fd); err == nil && pending == 0 {
		if snap := w.snap.Load(); snap != nil {
			return snap
		}
	}
	return w.refresh(s)
}

func (w *watcher) refresh(s *Store) *snapshot {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.dead.Load() {
		return nil
	}
	pending, err := queuedBytes(w.fd)
	if err != nil {
		w.dead.Store(true)
		return nil
	}
	if pending == 0 {
		if snap := w.snap.Load(); snap != nil {
			return snap // another request refreshed while this one waited
		}
	}
	w.snap.Store(nil) // before draining: see the comment at the top of this file
	took, err := w.drain()
	if err != nil {
		w.dead.Store(true)
		w.signalDrained()
		return nil
	}
	if took {
		w.signalDrained()
	}
	snap, err := s.readSnapshot()
	if err != nil {
		return nil // the root is unreadable right now: read directly, try again next time
	}
	w.snap.Store(snap)
	return snap
}

// drain consumes every queued event; took says there was at least one. It returns an error
// when the watch itself is gone.
func (w *watcher) drain() (took bool, err error) {
	var buf [64 * (unix.SizeofInotifyEvent + unix.NAME_MAX + 1)]byte
	for {
		n, err := unix.Read(w.fd, buf[:])
		if errors.Is(err, syscall.EAGAIN) {
			return took, nil
		}
		if err != nil {
			return took, fmt.Errorf("read inotify events: %w", err)
		}
		took = took || n > 0
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			if ev.Mask&(unix.IN_IGNORED|unix.IN_DELETE_SELF|unix.IN_MOVE_SELF|unix.IN_UNMOUNT) != 0 {
				return took, errors.New("spool root watch removed")
			}
			off += unix.SizeofInotifyEvent + int(ev.Len)
		}
	}
}

// signalDrained tells a ChangeWatcher, if one listens, that events were taken; one token
// stands for any number.
func (w *watcher) signalDrained() {
	select {
	case w.drained <- struct{}{}:
	default:
	}
}

// wait blocks until events are queued on the watch or it is dead, then takes them with a
// refresh (which signals drained). It returns an error when the store closed the watch or the
// read deadline passed (how a ChangeWatcher stops it). Events a check takes first wake it
// too (their edge reaches the poller), and it waits again: the check signalled them.
func (w *watcher) wait(s *Store) error {
	rc, err := w.file.SyscallConn()
	if err != nil {
		return err
	}
	err = rc.Read(func(fd uintptr) bool {
		if w.dead.Load() {
			return true
		}
		pending, err := queuedBytes(int(fd))
		return err != nil || pending > 0
	})
	if err != nil {
		return err
	}
	if w.dead.Load() {
		w.signalDrained()
		return nil
	}
	w.refresh(s)
	return nil
}

// readSnapshot reads every mark in the root, expired ones included (expiry is judged per
// request, against the clock).
func (s *Store) readSnapshot() (*snapshot, error) {
	marks, err := s.readAll()
	if err != nil {
		return nil, err
	}
	return &snapshot{marks: NewSet(marks...)}, nil
}

// queuedBytes is FIONREAD (TIOCINQ) on the inotify descriptor: how many bytes of events wait.
// It never blocks, so it is issued as a raw syscall, without telling the Go scheduler.
func queuedBytes(fd int) (int, error) {
	var n int32
	_, _, errno := unix.RawSyscall(unix.SYS_IOCTL, uintptr(fd), unix.TIOCINQ, uintptr(unsafe.Pointer(&n)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}
