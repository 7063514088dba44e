package server

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// The same on a real full disk: the log on a tmpfs of two pages, one of them taken by another
// file. Mounting needs privileges; without them the test is skipped (the fake disk above
// covers the logic).
func TestLogOnARealFullDisk(t *testing.T) {
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=8k,mode=0700"); err != nil {
		t.Skipf("cannot mount a small tmpfs here (%v)", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "hacheck.log")
	rf, err := OpenReopeningFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer rf.Close()
	full := false
	l := zerolog.New(writerFunc(func(p []byte) (int, error) {
		n, err := rf.Write(p)
		full = full || errors.Is(err, syscall.ENOSPC)
		return n, err
	}))
	reason := strings.Repeat("r", 300)
	for i := 0; i < 100 && !full; i++ {
		l.Info().Str("action", "down").Str("service", "web").Str("reason", reason).Msg("spool change")
	}
	if !full {
		t.Fatal("the tmpfs never filled up")
	}
	data, _ := os.ReadFile(path)
	if len(data) == 0 || data[len(data)-1] == '\n' {
		t.Skipf("the disk filled up between records (%d bytes), no fragment to end", len(data))
	}
	if err := os.Remove(filler); err != nil { // space is back
		t.Fatal(err)
	}
	l.Info().Str("action", "up").Str("service", "api").Msg("spool change")
	data, _ = os.ReadFile(path)
	lines := strings.Split(string(data), "\n")
	var rec map[string]any
	if last := lines[len(lines)-2]; json.Unmarshal([]byte(last), &rec) != nil || rec["service"] != "api" {
		t.Fatalf("the record after the full disk is %.120q...; want a whole JSON line", last)
	}
}
