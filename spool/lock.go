package spool

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// defaultLockWait bounds how long a writer waits for the lock. A write holds it for a few
// milliseconds (two fsyncs), so only a stuck or hostile holder makes anyone wait this long:
// flock needs no more than read access to the root, so with a root every user may list (0755)
// any local user can take the lock and keep it. A writer then fails with a one-line error
// naming the holder instead of hanging.
const defaultLockWait = 30 * time.Second

// locked runs fn holding the writers' lock, an exclusive flock on the root directory, so that a
// read-modify-write of one process is never interleaved with another's. fn gets the locked
// descriptor of the root to make its changes through; closing it releases the lock, also when
// the process dies.
func (s *Store) locked(fn func(dir *os.File) error) error {
	dir, err := os.OpenFile(s.root, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return accessError(s.root, "read", err)
	}
	defer dir.Close()
	if err := lockDir(dir, s.lockWait); err != nil {
		return err
	}
	tidy(dir, s.now())
	return fn(dir)
}

// lockDir takes an exclusive flock on dir, waiting at most wait. flock cannot be given a
// deadline, so it is tried without blocking, backing off from 1 ms to 20 ms between tries:
// a waiting writer gets the lock within 20 ms of its release.
func lockDir(dir *os.File, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	backoff := time.Millisecond
	for {
		err := syscall.Flock(int(dir.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case err == syscall.EINTR:
			continue
		case err != syscall.EWOULDBLOCK:
			return fmt.Errorf("lock %s: %w", dir.Name(), err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cannot lock %s: another process has held its lock for over %s%s",
				dir.Name(), wait, lockHolders(dir))
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, 20*time.Millisecond)
	}
}

// lockHolders names, for the error, the processes that hold a flock on dir (from /proc/locks),
// as " (pid 123, 456)", or "" when they cannot be found.
func lockHolders(dir *os.File) string {
	var st unix.Stat_t
	if unix.Fstat(int(dir.Fd()), &st) != nil {
		return ""
	}
	f, err := os.Open("/proc/locks")
	if err != nil {
		return ""
	}
	defer f.Close()
	// "1: FLOCK  ADVISORY  WRITE 1234 fe:00:778396 0 EOF"; waiters have "->" after the number.
	id := fmt.Sprintf("%02x:%02x:%d", unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	var pids []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[1] != "FLOCK" || fields[5] != id {
			continue
		}
		if _, err := strconv.Atoi(fields[4]); err == nil && !slices.Contains(pids, fields[4]) {
			pids = append(pids, fields[4])
		}
	}
	if len(pids) == 0 {
		return ""
	}
	return " (pid " + strings.Join(pids, ", ") + ")"
}
