package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// logClock is advanced by hand, so rotation tests need no sleeps.
type logClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *logClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *logClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func openTestLog(t *testing.T) (*ReopeningFile, string, *logClock) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hacheck.log")
	rf, err := OpenReopeningFile(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rf.Close() })
	clock := &logClock{t: time.Unix(1_700_000_000, 0)}
	rf.now, rf.lastCheck = clock.now, clock.now()
	return rf, path, clock
}

func writeLog(t *testing.T, rf *ReopeningFile, line string) {
	t.Helper()
	if n, err := rf.Write([]byte(line)); err != nil || n != len(line) {
		t.Fatalf("Write(%q) = %d, %v", line, n, err)
	}
}

func assertLogFile(t *testing.T, path, want string) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("%s holds %q, want %q", filepath.Base(path), got, want)
	}
}

// logrotate's default: rename the file away; the next write at least a second after the last
// check goes to a new file at the path.
func TestReopeningFileFollowsRename(t *testing.T) {
	rf, path, clock := openTestLog(t)
	writeLog(t, rf, "one\n")
	rotated := path + ".1"
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	writeLog(t, rf, "two\n") // within the second: still the moved file, no stat per line
	clock.advance(reopenCheckInterval)
	writeLog(t, rf, "three\n")
	writeLog(t, rf, "four\n")
	assertLogFile(t, rotated, "one\ntwo\n")
	assertLogFile(t, path, "three\nfour\n")
}

func TestReopeningFileFollowsReplacement(t *testing.T) {
	rf, path, clock := openTestLog(t)
	writeLog(t, rf, "old\n")
	// logrotate's `create`: move away and put an empty file in place before we notice.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	clock.advance(2 * reopenCheckInterval)
	writeLog(t, rf, "new\n")
	assertLogFile(t, path+".1", "old\n")
	assertLogFile(t, path, "new\n")
}

func TestReopeningFileFollowsDeletion(t *testing.T) {
	rf, path, clock := openTestLog(t)
	writeLog(t, rf, "gone\n")
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	clock.advance(reopenCheckInterval)
	writeLog(t, rf, "back\n")
	assertLogFile(t, path, "back\n")
}

func TestReopeningFileKeepsFileInPlace(t *testing.T) {
	rf, path, clock := openTestLog(t)
	writeLog(t, rf, "a\n")
	clock.advance(reopenCheckInterval)
	writeLog(t, rf, "b\n")
	// A clock stepping back (NTP) must not stop the checks for good.
	clock.advance(-time.Hour)
	writeLog(t, rf, "c\n")
	assertLogFile(t, path, "a\nb\nc\n")
}

func TestReopeningFileReopenSwitchesAtOnce(t *testing.T) {
	rf, path, _ := openTestLog(t)
	writeLog(t, rf, "before\n")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := rf.Reopen(); err != nil { // SIGHUP from logrotate's postrotate
		t.Fatal(err)
	}
	writeLog(t, rf, "after\n")
	assertLogFile(t, path+".1", "before\n")
	assertLogFile(t, path, "after\n")
}

// When the path cannot be reopened, lines keep going to the old file rather than being lost.
func TestReopeningFileKeepsOldFileWhenReopenFails(t *testing.T) {
	dir := t.TempDir()
	logDir := filepath.Join(dir, "logs")
	if err := os.Mkdir(logDir, 0o750); err != nil {
		t.Fatal(err)
	}
	rf, err := OpenReopeningFile(filepath.Join(logDir, "hacheck.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer rf.Close()
	clock := &logClock{t: time.Unix(1_700_000_000, 0)}
	rf.now, rf.lastCheck = clock.now, clock.now()
	moved := filepath.Join(dir, "moved")
	if err := os.Rename(logDir, moved); err != nil {
		t.Fatal(err)
	}
	if err := rf.Reopen(); err == nil {
		t.Error("Reopen succeeded with the directory gone")
	}
	clock.advance(reopenCheckInterval)
	writeLog(t, rf, "still here\n")
	assertLogFile(t, filepath.Join(moved, "hacheck.log"), "still here\n")
}

func TestReopeningFileModeAndClose(t *testing.T) {
	rf, path, _ := openTestLog(t)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm&^0o640 != 0 {
		t.Errorf("log file mode %v, want at most 0640", perm)
	}
	if err := rf.Close(); err != nil {
		t.Fatal(err)
	}
	if err := rf.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if _, err := rf.Write([]byte("x\n")); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("Write after Close = %v, want fs.ErrClosed", err)
	}
	if err := rf.Reopen(); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("Reopen after Close = %v, want fs.ErrClosed", err)
	}
}

func TestOpenReopeningFileErrorNamesPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no-such-dir", "hacheck.log")
	if _, err := OpenReopeningFile(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("OpenReopeningFile(%s) = %v", path, err)
	}
	if _, _, err := NewLogger(path, false); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("NewLogger(%s) = %v", path, err)
	}
}

// Concurrent writers and rotations: every line lands whole in exactly one of the files.
func TestReopeningFileConcurrentWritesStayWhole(t *testing.T) {
	rf, path, clock := openTestLog(t)
	const writers, lines = 8, 200
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range lines {
				line := fmt.Sprintf("writer %d line %d %s\n", w, i, strings.Repeat("x", 100))
				if _, err := rf.Write([]byte(line)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for i := range 5 {
		if err := os.Rename(path, fmt.Sprintf("%s.%d", path, i)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Error(err)
		}
		if i%2 == 0 {
			clock.advance(reopenCheckInterval)
		} else if err := rf.Reopen(); err != nil {
			t.Error(err)
		}
	}
	wg.Wait()

	files, _ := filepath.Glob(path + "*")
	seen := map[string]bool{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
			if l == "" {
				continue
			}
			if !strings.HasPrefix(l, "writer ") || !strings.HasSuffix(l, strings.Repeat("x", 100)) || seen[l] {
				t.Fatalf("torn or repeated line in %s: %q", f, l)
			}
			seen[l] = true
		}
	}
	if len(seen) != writers*lines {
		t.Errorf("found %d lines, want %d", len(seen), writers*lines)
	}
}

func TestNewLoggerFileWritesJSONLines(t *testing.T) {
	for _, verbose := range []bool{false, true} {
		path := filepath.Join(t.TempDir(), "hacheck.log")
		logger, closer, err := NewLogger(path, verbose)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := closer.(interface{ Reopen() error }); !ok {
			t.Errorf("the Closer for a file has no Reopen: %T", closer)
		}
		logger.Debug().Msg("per request")
		logger.Info().Str("service", "web").Msg("service down")
		if err := closer.Close(); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
		want := []string{"service down"}
		if verbose {
			want = []string{"per request", "service down"}
		}
		if len(lines) != len(want) {
			t.Fatalf("verbose=%v: got lines %q, want messages %q", verbose, lines, want)
		}
		for i, l := range lines {
			var entry map[string]any
			if err := json.Unmarshal([]byte(l), &entry); err != nil {
				t.Fatalf("not a JSON line: %q: %v", l, err)
			}
			if entry["message"] != want[i] || entry["time"] == nil || entry["level"] == nil {
				t.Errorf("line %q: want message %q with a time and a level", l, want[i])
			}
		}
	}
}

func TestNewLoggerStdStreams(t *testing.T) {
	for _, tc := range []struct {
		path    string
		verbose bool
		level   zerolog.Level
	}{{"stderr", false, zerolog.InfoLevel}, {"stdout", true, zerolog.DebugLevel}} {
		logger, closer, err := NewLogger(tc.path, tc.verbose)
		if err != nil {
			t.Fatal(err)
		}
		if logger.GetLevel() != tc.level {
			t.Errorf("NewLogger(%s, %v) level %v, want %v", tc.path, tc.verbose, logger.GetLevel(), tc.level)
		}
		r, ok := closer.(interface{ Reopen() error })
		if !ok || r.Reopen() != nil || closer.Close() != nil {
			t.Errorf("the Closer for %s must Reopen and Close as no-ops: %T", tc.path, closer)
		}
	}
	// Closing must not have closed the process's stderr.
	if _, err := os.Stderr.Stat(); err != nil {
		t.Errorf("stderr after Close: %v", err)
	}
}

func TestIsTerminal(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(f) {
		t.Error("a regular file counted as a terminal")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if isTerminal(w) {
		t.Error("a pipe (journald, docker) counted as a terminal")
	}
}

// brokenCollector fails every scrape.
type brokenCollector struct{ desc *prometheus.Desc }

func (c brokenCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c brokenCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.NewInvalidMetric(c.desc, errors.New("broken on purpose"))
}

// What goes wrong gathering /metrics is in the server's log (log_path), after a reload's new
// logger too, never only on the standard logger; the scrape still answers.
func TestMetricsErrorsGoToTheServerLog(t *testing.T) {
	var first, second lockedBuffer
	ts := startServer(t, nil)
	ts.metrics.Registry().MustRegister(brokenCollector{prometheus.NewDesc("hacheck_test_broken", "Broken on purpose.", nil, nil)})
	for _, logs := range []*lockedBuffer{&first, &second} {
		ts.SetLogger(zerolog.New(logs))
		if code, body, _ := ts.get(t, "/metrics"); code != 200 || !strings.Contains(body, "hacheck_build_info") {
			t.Fatalf("GET /metrics with a broken collector: %d", code)
		}
		if logs.lines(`"level":"error"`) != 1 || logs.lines("broken on purpose") != 1 {
			logs.mu.Lock()
			t.Errorf("server log: %q; want one error line naming the collector's error", logs.buf.String())
			logs.mu.Unlock()
		}
	}
}

// fullDisk takes room bytes, then refuses everything, the way a write(2) to a file on a full
// disk does: part of a record, then ENOSPC.
type fullDisk struct {
	bytes.Buffer
	room int
}

func (d *fullDisk) Write(p []byte) (int, error) {
	if len(p) <= d.room {
		d.room -= len(p)
		return d.Buffer.Write(p)
	}
	n := d.room
	d.room = 0
	d.Buffer.Write(p[:n])
	return n, syscall.ENOSPC
}

// With the log on a full disk a record is cut short; once there is room again, the next
// record is a line of its own, whole JSON, never glued to the fragment.
func TestLogRecordAfterAFullDiskIsAWholeLine(t *testing.T) {
	for _, room := range []int{0, 1, 30, 80} { // nothing, one byte, mid-record, one record and part of the next
		disk := &fullDisk{room: room}
		var ends lineEnds
		w := writerFunc(func(p []byte) (int, error) { return ends.write(disk, p) })
		l := zerolog.New(w)
		l.Info().Str("action", "down").Str("service", "web").Msg("spool change")
		l.Info().Str("action", "up").Str("service", "web").Msg("spool change") // lost: no room
		disk.room = 1 << 20                                                    // space is back
		l.Info().Str("action", "down").Str("service", "api").Msg("spool change")
		lines := strings.Split(disk.String(), "\n")
		last := lines[len(lines)-2]
		var rec map[string]any
		if err := json.Unmarshal([]byte(last), &rec); err != nil || rec["service"] != "api" {
			t.Errorf("room %d: the record after the full disk is %q (%v); want a whole JSON line\nlog: %q", room, last, err, disk.String())
		}
		if lines[len(lines)-1] != "" {
			t.Errorf("room %d: the log does not end with a whole line: %q", room, disk.String())
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
