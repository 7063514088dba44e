// Package spool is the host's store of maintenance marks: one small file per mark under a root
// directory, readable by old tools and compatible with the Python hacheck's spool.
//
// Reads never follow symlinks, never open anything but a regular file directly in the root and
// fail closed: a mark that exists but cannot be read counts as down. Writes are atomic (dot-prefixed
// temp file, fsync, rename, directory fsync) and serialised between processes by a lock file, so
// concurrent hadown/haup runs never lose or tear each other's marks.
package spool

import (
	"crypto/rand"
	"encoding/hex"
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

// lockName is the writers' lock file. Its leading dot keeps it from ever being read as a mark.
const lockName = ".hacheck.lock"

// tempPrefix starts every temporary file's name, so a crash mid-write leaves nothing that counts.
const tempPrefix = ".hacheck-tmp-"

// Store is the spool under one root directory. A change made by any writer is visible to the
// very next read: without Watch every read opens the files, with it reads come from a snapshot
// that is refreshed whenever the kernel reports a change in the root (see watch.go).
type Store struct {
	root  string
	now   func() time.Time
	watch *watcher // nil unless Watch was called
}

// Option configures a Store.
type Option func(*Store)

// WithClock replaces time.Now, for tests of expirations.
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// New returns the store rooted at root. It does no I/O: a missing root simply holds no marks.
func New(root string, opts ...Option) *Store {
	s := &Store{root: filepath.Clean(root), now: time.Now}
	for _, opt := range opts {
		opt(s)
	}
	return s
}

// Root is the spool's root directory.
func (s *Store) Root() string { return s.root }

// EnsureRoot creates the root (mode 0750) if it is missing and checks that it can be read.
func (s *Store) EnsureRoot() error {
	// Every failure here is the server lacking what it needs of the root: all of them are
	// AccessErrors, so the CLI exits 2 naming the path.
	if err := os.MkdirAll(s.root, 0o750); err != nil {
		return &AccessError{Path: s.root, Access: "create", Err: err}
	}
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
// or whole-service marks. ok is false when there is no such mark (no file, or an entry that is
// not a regular file, which is never treated as a mark). Expired marks are returned; see
// Mark.Expired.
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
	// O_NOFOLLOW: a symlink is not a mark. O_NONBLOCK: a FIFO planted in the root must not hang
	// the check. The fstat below rejects everything that is not a regular file.
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		if err == syscall.ENOENT || err == syscall.ELOOP || err == syscall.ENOTDIR {
			return Mark{}, false
		}
		m, _ := failClosed(Mark{}, fmt.Errorf("open %s: %w", path, err))
		return m, true
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		m, _ := failClosed(Mark{}, fmt.Errorf("stat %s: %w", path, err))
		return m, true
	}
	if !info.Mode().IsRegular() {
		return Mark{}, false
	}
	data, err := io.ReadAll(io.LimitReader(f, maxMarkSize+1))
	if err != nil {
		m, _ := failClosed(Mark{Creation: info.ModTime()}, fmt.Errorf("read %s: %w", path, err))
		return m, true
	}
	if len(data) > maxMarkSize {
		m, _ := failClosed(Mark{Creation: info.ModTime()}, fmt.Errorf("%s is larger than %d bytes", path, maxMarkSize))
		return m, true
	}
	m, _ := ParseContent(data, info.ModTime())
	return m, true
}

// Status is the effective state of (service, port): down when the host-wide mark, the
// whole-service mark or the instance's mark holds, checked in that order; the first one found
// is returned. Expired marks count as up; unreadable ones as down. port 0 checks only the first
// two.
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
	read := func(service string, port int) (Mark, bool) {
		if snap != nil {
			m, ok := snap.marks[markKey{service, port}]
			return m, ok
		}
		return s.Read(service, port)
	}
	if m, ok := read(AllServices, 0); ok && !m.Expired(now) {
		return m, true
	}
	if service != AllServices {
		if m, ok := read(service, 0); ok && !m.Expired(now) {
			return m, true
		}
	}
	if port != 0 {
		if m, ok := read(service, port); ok && !m.Expired(now) {
			return m, true
		}
	}
	return Mark{}, false
}

// List returns every mark that counts now (unexpired or unreadable), sorted by service and port.
// Entries that are not marks (dotfiles, temp files, symlinks, other names) are skipped.
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

// readAll reads every mark in the root, expired ones included, in directory order.
func (s *Store) readAll() ([]Mark, error) {
	entries, err := os.ReadDir(s.root)
	if err != nil {
		return nil, err
	}
	marks := make([]Mark, 0, len(entries))
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		service, port, ok := ParseFileName(e.Name())
		if !ok {
			continue
		}
		if m, ok := s.Read(service, port); ok {
			marks = append(marks, m)
		}
	}
	return marks, nil
}

// Down writes the mark for (service, port) and returns what was written. A zero expiration
// means the mark never expires; one that is not in the future is refused. Re-downing with the
// same reason keeps the original creation ("down since"); unknown JSON keys of the replaced
// mark are kept.
func (s *Store) Down(service string, port int, reason string, expiration time.Time) (Mark, error) {
	return s.DownSince(service, port, reason, expiration, time.Time{})
}

// DownSince is Down with an explicit creation time ("down since"), as the remote spool API
// accepts from tools that replicate marks; a zero creation behaves as Down.
func (s *Store) DownSince(service string, port int, reason string, expiration, creation time.Time) (Mark, error) {
	if err := ValidateName(service); err != nil {
		return Mark{}, err
	}
	if err := ValidatePort(service, port); err != nil {
		return Mark{}, err
	}
	now := s.now()
	if !expiration.IsZero() {
		if !expiration.After(now) {
			return Mark{}, invalidf("expiration %s is not in the future", expiration.UTC().Format(time.RFC3339))
		}
		if _, err := unixTime(unixSeconds(expiration)); err != nil {
			return Mark{}, invalidf("expiration: %v", err)
		}
	}
	if !creation.IsZero() {
		if _, err := unixTime(unixSeconds(creation)); err != nil {
			return Mark{}, invalidf("creation: %v", err)
		}
	}
	if err := os.MkdirAll(s.root, 0o750); err != nil {
		return Mark{}, accessError(s.root, "create", err)
	}
	var written Mark
	err := s.locked(func() error {
		m := Mark{Service: service, Port: port, Reason: reason, Creation: now, Expiration: expiration}
		if old, ok := s.Read(service, port); ok && old.Err == nil {
			m.extra = old.extra
			if old.Reason == reason && !old.Expired(now) {
				m.Creation = old.Creation
			}
		}
		if !creation.IsZero() {
			m.Creation = creation
		}
		data, err := m.MarshalContent()
		if err != nil {
			return fmt.Errorf("encode mark %s: %w", m.Name(), err)
		}
		if err := s.writeAtomic(m.Name(), data); err != nil {
			return err
		}
		written = m
		return nil
	})
	return written, err
}

// Up removes the mark for exactly (service, port). It is idempotent: removed is false when there
// was no mark. An entry that is not a regular file is not a mark and is left alone, with an error.
func (s *Store) Up(service string, port int) (removed bool, err error) {
	if err := ValidateName(service); err != nil {
		return false, err
	}
	if err := ValidatePort(service, port); err != nil {
		return false, err
	}
	if _, err := os.Stat(s.root); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	err = s.locked(func() error {
		path := filepath.Join(s.root, FileName(service, port))
		info, err := os.Lstat(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return accessError(path, "read", err)
		}
		if !info.Mode().IsRegular() {
			return fmt.Errorf("%s is not a mark file (%s); left alone", path, info.Mode().Type())
		}
		if err := os.Remove(path); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return accessError(path, "write", err)
		}
		removed = true
		return syncDir(s.root)
	})
	return removed, err
}

// locked runs fn holding the writers' lock, so that a read-modify-write of one process is never
// interleaved with another's.
func (s *Store) locked(fn func() error) error {
	path := filepath.Join(s.root, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o640)
	if err != nil {
		return accessError(path, "write", err)
	}
	defer f.Close()
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("lock %s: %w", path, err)
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return fn()
}

// writeAtomic replaces name with data so that a crash at any point leaves the old or the new
// content, never a torn file: write a dot-prefixed temp file, fsync, rename, fsync the directory.
func (s *Store) writeAtomic(name string, data []byte) (err error) {
	var suffix [8]byte
	_, _ = rand.Read(suffix[:])
	tmp := filepath.Join(s.root, tempPrefix+name+"-"+hex.EncodeToString(suffix[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		return accessError(s.root, "write", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	dest := filepath.Join(s.root, name)
	if err = os.Rename(tmp, dest); err != nil {
		return accessError(dest, "write", err)
	}
	return syncDir(s.root)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open %s for fsync: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}
