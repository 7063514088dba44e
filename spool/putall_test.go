package spool

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A reason that would make the mark larger than readers take is refused, nothing written: the
// unreadable file would hold the service down whatever the mark said (a weight, a drain).
func TestPutRefusesAMarkReadersWouldRefuse(t *testing.T) {
	s, _ := newTestStore(t)
	w := 30
	for name, m := range map[string]Mark{
		"70 KB reason":                     {Service: "lw", Reason: strings.Repeat("x", 70<<10), Weight: &w},
		"a reason JSON escapes to 6 bytes": {Service: "lw", Reason: strings.Repeat("<", 11<<10)},
	} {
		_, err := s.Put(m)
		var invalid *InvalidError
		if !errors.As(err, &invalid) || !strings.Contains(err.Error(), "reason") {
			t.Errorf("%s: Put = %v, want an InvalidError about the reason", name, err)
		}
	}
	if _, ok := s.Read("lw", 0); ok {
		t.Fatal("a refused mark was written")
	}
	// The largest mark that still fits is written, and read back as written.
	m, err := s.Put(Mark{Service: "lw", Reason: strings.Repeat("x", 60<<10), Weight: &w})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Read("lw", 0); got.Err != nil || !got.WeightOnly() || got.Reason != m.Reason {
		t.Fatalf("read back %v, %v", got.Err, got.WeightOnly())
	}
}

// A "down since" in the future would keep max_mark_age from ever flagging the mark: a writer
// refuses one further ahead than clocks drift, and takes one within that as now.
func TestPutCreationInTheFuture(t *testing.T) {
	s, clock := newTestStore(t)
	now := clock.Now()
	_, err := s.Put(Mark{Service: "web", Reason: "r", Creation: now.Add(48 * time.Hour)})
	var invalid *InvalidError
	if !errors.As(err, &invalid) {
		t.Fatalf("Put with a creation two days ahead = %v, want an InvalidError", err)
	}
	if _, ok := s.Read("web", 0); ok {
		t.Fatal("a refused mark was written")
	}
	m, err := s.Put(Mark{Service: "web", Reason: "r", Creation: now.Add(10 * time.Second)})
	if err != nil || !m.Creation.Equal(now) {
		t.Fatalf("Put with a creation 10s ahead = %v, %v; want written with creation now", m.Creation, err)
	}
	m, err = s.Put(Mark{Service: "api", Reason: "r", Creation: now.Add(-time.Hour)})
	if err != nil || !m.Creation.Equal(now.Add(-time.Hour)) {
		t.Fatalf("a past creation = %v, %v; want kept", m.Creation, err)
	}
}

// Readers do not believe a creation written by another writer far after the file's own time.
func TestParseContentDistrustsAFutureCreation(t *testing.T) {
	mtime := time.Unix(1750000000, 0)
	for _, tc := range []struct {
		creation string
		want     time.Time
	}{
		{"1750000030", time.Unix(1750000030, 0)}, // within clock drift
		{"1749990000", time.Unix(1749990000, 0)}, // down since before the file was last written
		{"1900000000", mtime},                    // years ahead: the file's time stands in
	} {
		m, err := ParseContent([]byte(`{"reason":"r","expiration":null,"creation":`+tc.creation+`}`), mtime)
		if err != nil || !m.Creation.Equal(tc.want) {
			t.Errorf("creation %s: %v, %v; want %v", tc.creation, m.Creation, err, tc.want)
		}
	}
}

// PutAll's check sees what the spool holds under the lock, and its refusal writes nothing.
func TestPutAllCheck(t *testing.T) {
	s, _ := newTestStore(t)
	mustDown(t, s, "web", 8080, "first", time.Time{})
	var saw Set
	refusal := errors.New("no")
	_, err := s.PutAll([]Mark{{Service: "web", Port: 8081, Reason: "second"}, {Service: "api", Reason: "x"}}, func(held Set) error {
		saw = held
		return refusal
	})
	if !errors.Is(err, refusal) {
		t.Fatalf("PutAll = %v, want the check's error", err)
	}
	if _, ok := saw[Key{"web", 8080}]; !ok || len(saw) != 1 {
		t.Fatalf("check saw %v, want web:8080", saw)
	}
	if names, _ := os.ReadDir(s.Root()); len(names) != 1 {
		t.Fatalf("the refused change wrote something: %v", names)
	}
	written, err := s.PutAll([]Mark{{Service: "web", Port: 8081, Reason: "second"}, {Service: "api", Reason: "x"}}, func(Set) error { return nil })
	if err != nil || len(written) != 2 || written[1].Key() != (Key{"api", 0}) {
		t.Fatalf("PutAll = %v, %v", written, err)
	}
	// One refused mark refuses them all.
	_, err = s.PutAll([]Mark{{Service: "db", Reason: "x"}, {Service: "db2", Reason: strings.Repeat("x", 70<<10)}}, nil)
	if err == nil {
		t.Fatal("PutAll with a mark too large: nil error")
	}
	if _, err := os.Lstat(filepath.Join(s.Root(), "db")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the first mark of a refused PutAll was written (%v)", err)
	}
}

// Writers that each allow themselves only if nobody else wrote yet: the lock lets exactly one
// through, however many race (each with its own descriptor of the root, as separate
// processes have).
func TestPutAllCheckIsUnderTheLock(t *testing.T) {
	s, _ := newTestStore(t)
	if err := os.MkdirAll(s.Root(), 0o750); err != nil {
		t.Fatal(err)
	}
	var passed atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := s.PutAll([]Mark{{Service: "web", Port: 8080 + i, Reason: "r"}}, func(held Set) error {
				if len(held) > 0 {
					return errors.New("someone was first")
				}
				return nil
			})
			if err == nil {
				passed.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	if n := passed.Load(); n != 1 {
		t.Fatalf("%d writers passed a check that only the first can pass", n)
	}
}
