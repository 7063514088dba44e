// Package spool is the host's store of maintenance marks: one small file per mark under a root
// directory, readable by old tools and compatible with the Python hacheck's spool.
//
// Reads never follow symlinks and never open anything but a regular file directly in the root;
// they fail closed: a mark that exists but cannot be read, or an entry under a mark's name that
// is not a regular file, counts as down. Writes are atomic (dot-prefixed temp file, fsync,
// rename, directory fsync) and serialised between processes by a lock on the root directory
// itself, so concurrent hadown/haup runs never lose or tear each other's marks and the root
// holds nothing but marks (see write.go).
package spool

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// maxMarkSize bounds how much of a mark file is read; a larger file is not a mark anyone wrote
// by hand and counts as down (fail closed) rather than costing memory on every check.
const maxMarkSize = 64 << 10

// Store is the spool under one root directory. A change made by any writer is visible to the
// very next read: without Watch every read opens the files, with it reads come from a snapshot
// that is refreshed whenever the kernel reports a change in the root (see watch.go).
type Store struct {
	root     string
	now      func() time.Time
	watch    *watcher      // nil unless Watch was called
	lockWait time.Duration // how long a writer waits for the lock
}

// Option configures a Store.
type Option func(*Store)

// WithClock replaces time.Now, for tests of expirations.
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// New returns the store rooted at root. It does no I/O: a missing root simply holds no marks.
func New(root string, opts ...Option) *Store {
	s := &Store{root: filepath.Clean(root), now: time.Now, lockWait: defaultLockWait}
	for _, opt := range opts {
		opt(s)
	}
	return s
}

// Root is the spool's root directory.
func (s *Store) Root() string { return s.root }

// EnsureRoot creates the root (mode 0750) if it is missing and checks that it can be read. It
// also removes, best effort, the lock file earlier versions left in the root.
func (s *Store) EnsureRoot() error {
	// Every failure here is the server lacking what it needs of the root: all of them are
	// AccessErrors, so the CLI exits 2 naming the path.
	if err := os.MkdirAll(s.root, 0o750); err != nil {
		return &AccessError{Path: s.root, Access: "create", Err: err}
	}
	s.removeLegacyLock()
	return s.checkListable()
}

// checkListable reports an AccessError when the root cannot be opened and listed.
func (s *Store) checkListable() error {
	f, err := os.Open(s.root)
	if err != nil {
		return &AccessError{Path: s.root, Access: "read", Err: err}
	}
	defer f.Close()
	if _, err := f.Readdirnames(1); err != nil && err != io.EOF {
		return &AccessError{Path: s.root, Access: "read", Err: err}
	}
	return nil
}

// CheckReadable reports an AccessError when the root exists but cannot be listed or searched
// by this process. A missing root is fine: it holds no marks.
func (s *Store) CheckReadable() error {
	if _, err := os.Stat(s.root); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err := s.checkListable(); err != nil {
		return err
	}
	// Listing needs read permission on the directory; opening the marks needs search (x).
	if err := syscall.Access(s.root, 0x1 /* X_OK */); err != nil {
		return &AccessError{Path: s.root, Access: "search", Err: err}
	}
	return nil
}

// AccessError says which access to which path was missing. The CLI exits 2 on it.
type AccessError struct {
	Path   string
	Access string // "read", "write" or "create"
	Err    error
}

func (e *AccessError) Error() string {
	return fmt.Sprintf("cannot %s %s: %v", e.Access, e.Path, e.Err)
}

func (e *AccessError) Unwrap() error { return e.Err }

func accessError(path, access string, err error) error {
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
		return &AccessError{Path: path, Access: access, Err: err}
	}
	return fmt.Errorf("%s %s: %w", access, path, err)
}

// Read returns the mark stored for exactly (service, port), without looking at the host-wide
// or whole-service marks. ok is false when there is no such entry. An entry that is not a
// regular file is returned as a mark that counts as down (Err set, Reason naming what it is),
// never followed or opened. Expired marks are returned; see Mark.Expired.
func (s *Store) Read(service string, port int) (m Mark, ok bool) {
	if ValidateName(service) != nil || ValidatePort(service, port) != nil {
		return Mark{}, false // not a name any mark can have, and never a path to open
	}
	name := FileName(service, port)
	m, ok = s.readFile(name)
	m.Service, m.Port = service, port
	return m, ok
}

func (s *Store) readFile(name string) (Mark, bool) {
	path := s.root + "/" + name
	// Lstat before open: an entry that is not a regular file is never opened. A FIFO's open
	// could block or take data meant for another reader, a device's open can act on the
	// device, and a symlink leads out of the root. For the usual case, no entry at all, this
	// costs what the open did: one failed lookup.
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		if err == syscall.ENOENT || err == syscall.ENOTDIR {
			return Mark{}, false
		}
		m, _ := failClosed(Mark{}, fmt.Errorf("stat %s: %w", path, err))
		return m, true
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return notRegular(st.Mode, modTime(&st)), true
	}
	// O_NOFOLLOW and O_NONBLOCK cover an entry swapped for a symlink or a FIFO since the Lstat:
	// the open then fails or returns at once, and the fstat below says what it is.
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		switch err {
		case syscall.ENOENT:
			return Mark{}, false // removed since the Lstat
		case syscall.ELOOP:
			return notRegular(syscall.S_IFLNK, modTime(&st)), true
		}
		m, _ := failClosed(Mark{Creation: modTime(&st)}, fmt.Errorf("open %s: %w", path, err))
		return m, true
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	if err := syscall.Fstat(fd, &st); err != nil {
		m, _ := failClosed(Mark{Creation: modTime(&st)}, fmt.Errorf("stat %s: %w", path, err))
		return m, true
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return notRegular(st.Mode, modTime(&st)), true
	}
	data, err := io.ReadAll(io.LimitReader(f, maxMarkSize+1))
	if err != nil {
		m, _ := failClosed(Mark{Creation: modTime(&st)}, fmt.Errorf("read %s: %w", path, err))
		return m, true
	}
	if len(data) > maxMarkSize {
		m, _ := failClosed(Mark{Creation: modTime(&st)}, fmt.Errorf("%s is larger than %d bytes", path, maxMarkSize))
		return m, true
	}
	m, _ := ParseContent(data, modTime(&st))
	return m, true
}

func modTime(st *syscall.Stat_t) time.Time { return time.Unix(st.Mtim.Unix()) }

// NotRegularError is the Err of a mark whose entry in the root is not a regular file: a
// symlink, FIFO, directory, socket or device someone put under a mark's name. It counts as
// down (fail closed) and is never followed, opened or removed by these tools.
type NotRegularError struct {
	What string // "symlink", "FIFO", "directory", "socket", "device file"
}

func (e *NotRegularError) Error() string {
	if e.What == "symlink" {
		return "symlink in the spool, not followed"
	}
	return e.What + " in the spool, not read"
}

// notRegular is the mark for an entry of type mode (S_IFMT bits) under a mark's name; its
// reason says what the entry is, and "down since" is the entry's own modification time.
func notRegular(mode uint32, mtime time.Time) Mark {
	err := notRegularError(mode)
	return Mark{Reason: err.Error(), Creation: mtime, Err: err}
}

func notRegularError(mode uint32) *NotRegularError {
	what := "non-regular file"
	switch mode & syscall.S_IFMT {
	case syscall.S_IFLNK:
		what = "symlink"
	case syscall.S_IFIFO:
		what = "FIFO"
	case syscall.S_IFDIR:
		what = "directory"
	case syscall.S_IFSOCK:
		what = "socket"
	case syscall.S_IFCHR, syscall.S_IFBLK:
		what = "device file"
	}
	return &NotRegularError{What: what}
}

// Status is the effective state of (service, port): down when the host-wide mark, the
// whole-service mark or the instance's mark holds, checked in that order; the first one found
// is returned. Expired marks count as up; unreadable ones as down. port 0 checks only the first
// two. A weight-only mark (see Mark.WeightOnly) holds nothing down: when no mark does, the most
// specific weight-only one is returned, with down false.
func (s *Store) Status(service string, port int) (m Mark, down bool) {
	return s.StatusAt(service, port, s.now())
}

// StatusAt is Status judged at now, for callers that already read the clock.
func (s *Store) StatusAt(service string, port int, now time.Time) (m Mark, down bool) {
	var snap *snapshot
	if s.watch != nil {
		snap = s.watch.current(s, now)
		if snap != nil && len(snap.marks) == 0 {
			return Mark{}, false // the usual case: nothing is down
		}
	}
	if snap != nil {
		return snap.marks.Status(service, port, now)
	}
	return statusOf(func(k Key) (Mark, bool) { return s.Read(k.Service, k.Port) }, service, port, now)
}

// List returns every mark that counts now (unexpired or unreadable), sorted by service and port.
// Entries whose names cannot be marks (dotfiles, temp files, other names) are skipped.
func (s *Store) List() ([]Mark, error) {
	all, err := s.readAll()
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, accessError(s.root, "read", err)
	}
	now := s.now()
	marks := all[:0]
	for _, m := range all {
		if !m.Expired(now) {
			marks = append(marks, m)
		}
	}
	slices.SortFunc(marks, func(a, b Mark) int {
		if c := strings.Compare(a.Service, b.Service); c != 0 {
			return c
		}
		return a.Port - b.Port
	})
	return marks, nil
}

// readAll reads every mark in the root, expired ones included, in directory order. Entries
// whose names cannot be marks (dotfiles, temp files, other names) are skipped; entries under a
// mark's name that are not regular files are marks that count as down (see Read).
func (s *Store) readAll() ([]Mark, error) {
	d, err := os.Open(s.root)
	if err != nil {
		return nil, err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, err
	}
	marks := make([]Mark, 0, len(names))
	for _, name := range names {
		service, port, ok := ParseFileName(name)
		if !ok {
			continue
		}
		if m, ok := s.Read(service, port); ok {
			marks = append(marks, m)
		}
	}
	return marks, nil
}
