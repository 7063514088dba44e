package spool

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// oddEntry is one kind of entry that is not a regular file, made under a mark's name.
type oddEntry struct {
	kind   string
	reason string
	make   func(t *testing.T, path string)
}

// oddEntries lists every kind of entry that is not a regular file, with the reason the spool
// gives it.
var oddEntries = []oddEntry{
	{"symlink", "symlink in the spool, not followed", func(t *testing.T, path string) {
		outside := filepath.Join(t.TempDir(), "secret")
		if err := os.WriteFile(outside, []byte("outside the root"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(outside, path); err != nil {
			t.Fatal(err)
		}
	}},
	{"dangling symlink", "symlink in the spool, not followed", func(t *testing.T, path string) {
		if err := os.Symlink("/nonexistent/hacheck-test", path); err != nil {
			t.Fatal(err)
		}
	}},
	{"FIFO", "FIFO in the spool, not read", func(t *testing.T, path string) {
		if err := syscall.Mkfifo(path, 0o644); err != nil {
			t.Fatal(err)
		}
	}},
	{"directory", "directory in the spool, not read", func(t *testing.T, path string) {
		if err := os.Mkdir(path, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(path, "inside"), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}},
	{"socket", "socket in the spool, not read", func(t *testing.T, path string) {
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		l.SetUnlinkOnClose(false)
		t.Cleanup(func() { l.Close() })
	}},
	{"device file", "device file in the spool, not read", func(t *testing.T, path string) {
		// Like /dev/null (1, 3); making one needs root.
		if err := syscall.Mknod(path, syscall.S_IFCHR|0o600, int(unix.Mkdev(1, 3))); err != nil {
			t.Skipf("cannot make a device file: %v", err)
		}
	}},
}

// openWatch reports every open of an entry in dir from now on: the proof that odd entries are
// never opened (a FIFO's open could block, a device's act on the device).
func openWatch(t *testing.T, dir string) (opened func() []string) {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_OPEN|unix.IN_ACCESS); err != nil {
		t.Fatal(err)
	}
	return func() []string {
		var names []string
		var buf [4096]byte
		for {
			n, err := unix.Read(fd, buf[:])
			if err != nil {
				return names
			}
			for off := 0; off+unix.SizeofInotifyEvent <= n; {
				ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
				name := strings.TrimRight(string(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)]), "\x00")
				if name != "" { // "" is the root itself, which List reads
					names = append(names, name)
				}
				off += unix.SizeofInotifyEvent + int(ev.Len)
			}
		}
	}
}

// An entry under a mark's name that is not a regular file counts as down, with a reason naming
// what it is, through every way the store is read, watched or not; it is never followed or
// opened, and neither haup nor hadown replaces or removes it.
func TestOddEntriesFailClosed(t *testing.T) {
	for _, kind := range oddEntries {
		for _, watched := range []bool{false, true} {
			name := kind.kind
			if watched {
				name += "/watched"
			}
			t.Run(name, func(t *testing.T) {
				s, _ := newTestStore(t)
				if watched {
					if err := s.Watch(); err != nil {
						t.Fatal(err)
					}
					defer s.Close()
				}
				path := filepath.Join(s.Root(), "web:8080")
				kind.make(t, path)
				before, err := os.Lstat(path)
				if err != nil {
					t.Fatal(err)
				}
				opened := openWatch(t, s.Root())

				m, down := s.Status("web", 8080)
				var nr *NotRegularError
				if !down || m.Reason != kind.reason || !errors.As(m.Err, &nr) || m.Name() != "web:8080" {
					t.Fatalf("Status = %+v, %v; want down with reason %q", m, down, kind.reason)
				}
				if m.Creation.IsZero() || !strings.HasPrefix(m.DownBody("web"), "Service web in down state since ") {
					t.Errorf("down body %q has no since", m.DownBody("web"))
				}
				if m, down := s.Status("web", 8081); down {
					t.Errorf("another instance counted down: %+v", m)
				}
				marks, err := s.List()
				if err != nil || len(marks) != 1 || marks[0].Reason != kind.reason || marks[0].Err == nil {
					t.Fatalf("List = %+v, %v; want the odd entry as an unreadable mark", marks, err)
				}
				_, err = s.Up("web", 8080)
				if err == nil || !strings.Contains(err.Error(), "is a "+strings.TrimPrefix(kind.kind, "dangling ")+", not a mark file") ||
					strings.Contains(err.Error(), "\n") {
					t.Errorf("Up = %v, want a one-line refusal naming what it is", err)
				}
				if _, err := s.Down("web", 8080, "r", time.Time{}); err == nil || !strings.Contains(err.Error(), "not a mark file") {
					t.Errorf("Down = %v, want a refusal", err)
				}
				after, err := os.Lstat(path)
				if err != nil || !os.SameFile(before, after) || after.Mode() != before.Mode() {
					t.Errorf("the entry was replaced or removed: %v", err)
				}
				if names := opened(); len(names) > 0 {
					t.Errorf("entries opened: %v", names)
				}
				// The watch itself works: reading a real mark shows.
				mustDown(t, s, "api", 0, "r", time.Time{})
				opened()
				s.Read("api", 0)
				if names := opened(); !slices.Contains(names, "api") {
					t.Errorf("reading a mark was not seen: %v", names)
				}
			})
		}
	}
}

// An odd entry under the host-wide mark's name holds every service down.
func TestOddEntryAsHostWideMark(t *testing.T) {
	s, _ := newTestStore(t)
	if err := os.Mkdir(filepath.Join(s.Root(), AllServices), 0o755); err != nil {
		t.Fatal(err)
	}
	m, down := s.Status("web", 8080)
	body := m.DownBody("web")
	if !down || m.Service != AllServices || !strings.HasPrefix(body, "Service all in down state since ") ||
		!strings.HasSuffix(body, ": directory in the spool, not read") {
		t.Fatalf("Status = %+v, %v; body %q", m, down, body)
	}
}
