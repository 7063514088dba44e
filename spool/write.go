package spool

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The root holds marks and nothing else that lasts: old tools and monitoring scripts list the
// directory and take every entry for a mark (the Python hacheck reports a file ".hacheck.lock"
// as a service that is down). So writers lock the root directory itself, with flock on a
// read-only descriptor of it, and do every step of a change through that descriptor: the lock
// and the change are about the same directory even if the root path is swapped meanwhile. The
// only files a write creates are its temp file, which is renamed over the mark or removed
// before the lock is released.

// tempPrefix starts every temporary file's name, so a crash mid-write leaves nothing that counts.
const tempPrefix = ".hacheck-tmp-"

// legacyLockName is the lock file earlier versions of these tools kept in the root.
//
// It is removed (best effort) by every write and when the server prepares the root. Left in
// place, old tools would keep listing it as a down service after an upgrade. Removing it costs
// nothing of what it guarded: during an upgrade, a writer of the old version (locking the file)
// and one of this version (locking the directory) are not serialised against each other either
// way, and each still replaces a mark whole by rename, so the worst outcome of that race is that
// one of two simultaneous changes wins, never a torn or half-written mark.
const legacyLockName = ".hacheck.lock"

// staleTempAge is how old a temp file must be before a writer removes it as a crashed writer's
// leftover. Writers of this version create temp files only while holding the lock, so any temp
// file seen under the lock is a leftover; the age spares a writer of an older version that is
// between its create and its rename right now, which takes milliseconds.
const staleTempAge = time.Minute

// Down writes the mark for (service, port) and returns what was written. A zero expiration
// means the mark never expires; one that is not in the future is refused. Re-downing with the
// same reason keeps the original creation ("down since"); unknown JSON keys of the replaced
// mark are kept.
func (s *Store) Down(service string, port int, reason string, expiration time.Time) (Mark, error) {
	return s.Put(Mark{Service: service, Port: port, Reason: reason, Expiration: expiration})
}

// DownSince is Down with an explicit creation time ("down since"), as the remote spool API
// accepts from tools that replicate marks; a zero creation behaves as Down.
func (s *Store) DownSince(service string, port int, reason string, expiration, creation time.Time) (Mark, error) {
	return s.Put(Mark{Service: service, Port: port, Reason: reason, Expiration: expiration, Creation: creation})
}

// Put writes m as the mark for (m.Service, m.Port), with its Reason, Expiration, Drain and
// Weight, and returns what was written. A zero Creation means now, or the replaced mark's
// creation when the reason is the same and that mark still counts ("down since" survives a
// refresh of the expiration); a non-zero one is written as given, or as now when it is ahead of
// now by less than creationSkew. Unknown JSON keys of the replaced mark are kept. An expiration
// that is not in the future, a creation further ahead, a weight outside 0–256, a mark that would
// be larger than readers take (a reason too long) and an entry under the mark's name that is
// not a regular file are refused; nothing is written.
func (s *Store) Put(m Mark) (Mark, error) {
	written, err := s.PutAll([]Mark{m}, nil)
	if err != nil {
		return Mark{}, err
	}
	return written[0], nil
}

// creationSkew is how far ahead of this host's clock a creation given by a writer may be: the
// clock difference between two hosts when a tool copies a mark from one to the other. It is then
// written as now. Further ahead it is refused: a "down since" in the future would make the mark
// look new for as long as that, and keep max_mark_age from ever flagging it.
const creationSkew = time.Minute

// PutAll writes every mark of marks as Put does, under one hold of the writers' lock. When
// check is not nil it is called first, under the lock, with every mark that counts in the spool
// at that moment (unexpired or unreadable): what it decides from stays true until the marks are
// written, whatever another writer on this host (a command, the server) tries meanwhile. Its
// error is returned as it is, and nothing is written; nothing is written either when any mark
// is refused. It returns the marks written, in order.
func (s *Store) PutAll(marks []Mark, check func(held Set) error) ([]Mark, error) {
	now := s.now()
	for i := range marks {
		if err := s.validate(&marks[i], now); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(s.root, 0o750); err != nil {
		return nil, accessError(s.root, "create", err)
	}
	var written []Mark
	err := s.locked(func(dir *os.File) error {
		if check != nil {
			all, err := s.readAll()
			if err != nil {
				return accessError(s.root, "read", err)
			}
			held := make(Set, len(all))
			for _, m := range all {
				if !m.Expired(now) {
					held[m.Key()] = m
				}
			}
			if err := check(held); err != nil {
				return err
			}
		}
		// Every mark is encoded (and refused) before the first is written, so that a refusal
		// leaves the spool as it was.
		out := make([]Mark, len(marks))
		data := make([][]byte, len(marks))
		for i, m := range marks {
			old, exists := s.Read(m.Service, m.Port)
			var notRegular *NotRegularError
			if errors.As(old.Err, &notRegular) {
				return leftAlone(filepath.Join(s.root, m.Name()), notRegular)
			}
			if exists && old.Err == nil {
				m.extra = old.extra
				if m.Creation.IsZero() && old.Reason == m.Reason && !old.Expired(now) {
					m.Creation = old.Creation
				}
			}
			if m.Creation.IsZero() {
				m.Creation = now
			}
			b, err := m.MarshalContent()
			if err != nil {
				return fmt.Errorf("encode mark %s: %w", m.Name(), err)
			}
			if err := fits(m, b); err != nil {
				return err // with the replaced mark's unknown keys
			}
			out[i], data[i] = m, b
		}
		for i, m := range out {
			if err := s.writeAtomic(dir, m.Name(), data[i]); err != nil {
				return err
			}
			written = append(written, m)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return written, nil
}

// validate refuses, before anything is touched, what no mark may say; a creation a little ahead
// of now becomes now.
func (s *Store) validate(m *Mark, now time.Time) error {
	if err := ValidateName(m.Service); err != nil {
		return err
	}
	if err := ValidatePort(m.Service, m.Port); err != nil {
		return err
	}
	if !m.Expiration.IsZero() {
		if !m.Expiration.After(now) {
			return invalidf("expiration %s is not in the future", m.Expiration.UTC().Format(time.RFC3339))
		}
		if _, err := unixTime(unixSeconds(m.Expiration)); err != nil {
			return invalidf("expiration: %v", err)
		}
	}
	if !m.Creation.IsZero() {
		if _, err := unixTime(unixSeconds(m.Creation)); err != nil {
			return invalidf("creation: %v", err)
		}
		switch {
		case m.Creation.After(now.Add(creationSkew)):
			return invalidf("creation %s is in the future (this host's clock says %s)",
				m.Creation.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
		case m.Creation.After(now):
			m.Creation = now
		}
	}
	if m.Weight != nil && (*m.Weight < 0 || *m.Weight > MaxWeight) {
		return invalidf("weight %d%% is outside 0-%d%%", *m.Weight, MaxWeight)
	}
	m.Err, m.extra = nil, nil
	// Checked again under the lock, with the unknown keys of the mark it replaces; a creation
	// of now (when none is given) adds no more than the digits of a unix time.
	probe := *m
	if probe.Creation.IsZero() {
		probe.Creation = now
	}
	b, err := probe.MarshalContent()
	if err != nil {
		return invalidf("mark %s: %v", m.Name(), err)
	}
	return fits(*m, b)
}

// fits refuses the content b of m when readers would not take it: they count a larger file as
// down, so written, it would hold the service down whatever it says (a weight, a drain).
func fits(m Mark, b []byte) error {
	if len(b) > maxMarkSize {
		return invalidf("mark %s would be %d bytes, over the %d readers take: shorten the reason (%d bytes)",
			m.Name(), len(b), maxMarkSize, len(m.Reason))
	}
	return nil
}

// Up removes the mark for exactly (service, port). It is idempotent: removed is false when there
// was no mark. An entry that is not a regular file is not removed: it is refused with an error.
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
	err = s.locked(func(dir *os.File) error {
		name := FileName(service, port)
		path := filepath.Join(s.root, name)
		var st unix.Stat_t
		err := unix.Fstatat(int(dir.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW)
		if errors.Is(err, syscall.ENOENT) {
			return nil
		}
		if err != nil {
			return accessError(path, "read", err)
		}
		if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
			return leftAlone(path, notRegularError(st.Mode))
		}
		if err := unix.Unlinkat(int(dir.Fd()), name, 0); err != nil {
			if errors.Is(err, syscall.ENOENT) {
				return nil
			}
			return accessError(path, "write", err)
		}
		removed = true
		return syncDir(dir)
	})
	return removed, err
}

// leftAlone is the refusal to replace or remove an entry that is not a mark file.
func leftAlone(path string, e *NotRegularError) error {
	return fmt.Errorf("%s is a %s, not a mark file: left alone, remove it by hand if it should go", path, e.What)
}

// tidy removes, best effort, what earlier writers left in the root: the lock file of earlier
// versions and temp files of writers that crashed. Neither is ever a mark; failures are ignored,
// because a write must not fail over them.
func tidy(dir *os.File, now time.Time) {
	fd := int(dir.Fd())
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return
	}
	for _, name := range names {
		switch {
		case name == legacyLockName:
			_ = unix.Unlinkat(fd, name, 0)
		case strings.HasPrefix(name, tempPrefix):
			var st unix.Stat_t
			if unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil &&
				now.Sub(time.Unix(st.Mtim.Unix())) > staleTempAge {
				_ = unix.Unlinkat(fd, name, 0)
			}
		}
	}
}

// removeLegacyLock removes, best effort, the lock file earlier versions kept in the root (see
// legacyLockName), so that an upgraded host stops showing it to old tools as soon as the server
// starts, before the next write. unlink, not remove: a directory of that name is left alone.
func (s *Store) removeLegacyLock() {
	_ = unix.Unlinkat(unix.AT_FDCWD, filepath.Join(s.root, legacyLockName), 0)
}

// writeAtomic replaces name in dir with data so that a crash at any point leaves the old or the
// new content, never a torn file: write a dot-prefixed temp file, fsync, rename, fsync the
// directory.
func (s *Store) writeAtomic(dir *os.File, name string, data []byte) (err error) {
	var suffix [8]byte
	_, _ = rand.Read(suffix[:])
	tmp := tempPrefix + name + "-" + hex.EncodeToString(suffix[:])
	tmpPath := filepath.Join(s.root, tmp)
	fd, err := unix.Openat(int(dir.Fd()), tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return accessError(s.root, "write", err)
	}
	f := os.NewFile(uintptr(fd), tmpPath)
	defer func() {
		if err != nil {
			f.Close()
			_ = unix.Unlinkat(int(dir.Fd()), tmp, 0)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmpPath, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", tmpPath, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmpPath, err)
	}
	if err = unix.Renameat(int(dir.Fd()), tmp, int(dir.Fd()), name); err != nil {
		return accessError(filepath.Join(s.root, name), "write", err)
	}
	return syncDir(dir)
}

func syncDir(dir *os.File) error {
	if err := dir.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir.Name(), err)
	}
	return nil
}
