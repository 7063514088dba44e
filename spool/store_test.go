package spool

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newTestStore(t *testing.T) (*Store, *fakeClock) {
	t.Helper()
	clock := &fakeClock{now: time.Unix(1750000000, 0)}
	return New(t.TempDir(), WithClock(clock.Now)), clock
}

func mustDown(t *testing.T, s *Store, service string, port int, reason string, exp time.Time) Mark {
	t.Helper()
	m, err := s.Down(service, port, reason, exp)
	if err != nil {
		t.Fatalf("Down(%q, %d): %v", service, port, err)
	}
	return m
}

func writeFile(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestStatusOrder(t *testing.T) {
	tests := []struct {
		name       string
		marks      map[string]string // file name -> reason
		service    string
		port       int
		wantDown   bool
		wantReason string
		wantFrom   string
	}{
		{"no marks", nil, "web", 8080, false, "", ""},
		{"service mark", map[string]string{"web": "deploy"}, "web", 8080, true, "deploy", "web"},
		{"service mark, port 0", map[string]string{"web": "deploy"}, "web", 0, true, "deploy", "web"},
		{"instance mark", map[string]string{"web:8080": "disk"}, "web", 8080, true, "disk", "web:8080"},
		{"other instance", map[string]string{"web:8081": "disk"}, "web", 8080, false, "", ""},
		{"instance mark ignored for port 0", map[string]string{"web:8080": "disk"}, "web", 0, false, "", ""},
		{"all wins", map[string]string{"all": "host", "web": "svc", "web:8080": "inst"}, "web", 8080, true, "host", "all"},
		{"service before instance", map[string]string{"web": "svc", "web:8080": "inst"}, "web", 8080, true, "svc", "web"},
		{"other service", map[string]string{"api": "x"}, "web", 8080, false, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newTestStore(t)
			for name, reason := range tt.marks {
				service, port, _ := ParseFileName(name)
				mustDown(t, s, service, port, reason, time.Time{})
			}
			m, down := s.Status(tt.service, tt.port)
			if down != tt.wantDown || m.Reason != tt.wantReason || (down && m.Name() != tt.wantFrom) {
				t.Fatalf("Status = %v %q from %q, want %v %q from %q", down, m.Reason, m.Name(), tt.wantDown, tt.wantReason, tt.wantFrom)
			}
		})
	}
}

func TestExpiration(t *testing.T) {
	s, clock := newTestStore(t)
	mustDown(t, s, "web", 0, "for a while", clock.Now().Add(30*time.Minute))
	if _, down := s.Status("web", 0); !down {
		t.Fatal("fresh mark should count")
	}
	clock.Advance(30 * time.Minute)
	if m, down := s.Status("web", 0); down {
		t.Fatalf("expired mark still counts: %+v", m)
	}
	if marks, _ := s.List(); len(marks) != 0 {
		t.Fatalf("List shows expired marks: %+v", marks)
	}
	// An expired mark is inert, never deleted behind a writer's back: the file stays.
	if _, err := os.Stat(filepath.Join(s.Root(), "web")); err != nil {
		t.Fatalf("expired mark file removed by a reader: %v", err)
	}
}

func TestDownRefusesPastExpirationAndBadNames(t *testing.T) {
	s, clock := newTestStore(t)
	tests := []struct {
		service string
		port    int
		exp     time.Time
		wantErr string
	}{
		{"web", 0, clock.Now().Add(-time.Second), "not in the future"},
		{"web", 0, clock.Now(), "not in the future"},
		{"../etc", 0, time.Time{}, "invalid service name"},
		{".x", 0, time.Time{}, "invalid service name"},
		{"a/b", 0, time.Time{}, "invalid service name"},
		{"", 0, time.Time{}, "invalid service name"},
		{strings.Repeat("a", 200), 0, time.Time{}, "invalid service name"},
		{"web", 70000, time.Time{}, "invalid port"},
		{"web", -1, time.Time{}, "invalid port"},
	}
	for _, tt := range tests {
		if _, err := s.Down(tt.service, tt.port, "r", tt.exp); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("Down(%q, %d, %v) = %v, want %q", tt.service, tt.port, tt.exp, err, tt.wantErr)
		}
		if _, err := s.Up(tt.service, tt.port); tt.exp.IsZero() && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("Up(%q, %d) = %v, want %q", tt.service, tt.port, err, tt.wantErr)
		}
	}
	entries, _ := os.ReadDir(s.Root())
	for _, e := range entries {
		t.Errorf("refused writes left %q behind", e.Name())
	}
}

func TestRedownKeepsCreationForSameReason(t *testing.T) {
	s, clock := newTestStore(t)
	first := mustDown(t, s, "web", 0, "upgrade", clock.Now().Add(time.Hour))
	clock.Advance(10 * time.Minute)
	again := mustDown(t, s, "web", 0, "upgrade", clock.Now().Add(2*time.Hour))
	if !again.Creation.Equal(first.Creation) {
		t.Fatalf("same reason: creation moved from %v to %v", first.Creation, again.Creation)
	}
	m, _ := s.Read("web", 0)
	if !m.Expiration.Equal(clock.Now().Add(2 * time.Hour)) {
		t.Fatalf("expiration not refreshed: %v", m.Expiration)
	}
	clock.Advance(time.Minute)
	other := mustDown(t, s, "web", 0, "another reason", time.Time{})
	if !other.Creation.Equal(clock.Now()) {
		t.Fatalf("new reason should restart creation, got %v", other.Creation)
	}
}

func TestDownKeepsUnknownKeys(t *testing.T) {
	s, _ := newTestStore(t)
	writeFile(t, s.Root(), "web", `{"reason": "a", "expiration": null, "creation": 1, "ticket": "OPS-7"}`)
	mustDown(t, s, "web", 0, "b", time.Time{})
	data, _ := os.ReadFile(filepath.Join(s.Root(), "web"))
	if !strings.Contains(string(data), `"ticket":"OPS-7"`) {
		t.Fatalf("unknown key lost: %s", data)
	}
}

func TestUpIsIdempotent(t *testing.T) {
	s, _ := newTestStore(t)
	mustDown(t, s, "web", 8080, "x", time.Time{})
	for i, want := range []bool{true, false} {
		removed, err := s.Up("web", 8080)
		if err != nil || removed != want {
			t.Fatalf("Up #%d = %v, %v; want %v", i, removed, err, want)
		}
	}
	if _, err := New(filepath.Join(t.TempDir(), "missing")).Up("web", 0); err != nil {
		t.Fatalf("Up on a missing root: %v", err)
	}
}

// Names that cannot be marks are not marks, whatever their content; odd entries under names
// that can be are in odd_test.go.
func TestNonMarkNamesAreIgnored(t *testing.T) {
	s, _ := newTestStore(t)
	writeFile(t, s.Root(), ".hidden", "x")
	writeFile(t, s.Root(), tempPrefix+"api-00", "x")
	writeFile(t, s.Root(), "bad name", "x")
	writeFile(t, s.Root(), "web:0", "x")
	writeFile(t, s.Root(), "all:80", "x")
	for _, service := range []string{"hidden", "api", "bad", "web", "all"} {
		if m, down := s.Status(service, 80); down {
			t.Errorf("%s counted as a mark: %+v", service, m)
		}
	}
	marks, err := s.List()
	if err != nil || len(marks) != 0 {
		t.Fatalf("List = %+v, %v; want nothing", marks, err)
	}
}

func TestUnparsableMarkFailsClosed(t *testing.T) {
	s, _ := newTestStore(t)
	writeFile(t, s.Root(), "web", `{"reason": "x", "expiration": "tomorrow"}`)
	m, down := s.Status("web", 8080)
	if !down || m.Err == nil || !strings.Contains(m.Reason, "unreadable mark") {
		t.Fatalf("Status = %+v, %v; want down with a reason saying why", m, down)
	}
	marks, _ := s.List()
	if len(marks) != 1 || marks[0].Err == nil {
		t.Fatalf("List should show the unreadable mark: %+v", marks)
	}
	writeFile(t, s.Root(), "big", strings.Repeat("x", maxMarkSize+1))
	if m, down := s.Status("big", 0); !down || m.Err == nil {
		t.Fatalf("oversized mark: %+v, %v; want fail closed", m, down)
	}
}

func TestPlainTextMarkFromOldTools(t *testing.T) {
	s, _ := newTestStore(t)
	writeFile(t, s.Root(), "web", "rebooting\n")
	m, down := s.Status("web", 0)
	if !down || m.Reason != "rebooting" || m.Err != nil {
		t.Fatalf("Status = %+v, %v", m, down)
	}
	// An old tool rewriting the file in place is seen by the next read.
	writeFile(t, s.Root(), "web", "still rebooting")
	if m, _ := s.Status("web", 0); m.Reason != "still rebooting" {
		t.Fatalf("in-place rewrite not seen: %q", m.Reason)
	}
}

func TestListSorted(t *testing.T) {
	s, _ := newTestStore(t)
	for _, name := range []string{"web:8081", "api", "web", "all", "web:80"} {
		service, port, _ := ParseFileName(name)
		mustDown(t, s, service, port, "r", time.Time{})
	}
	marks, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range marks {
		names = append(names, m.Name())
	}
	if got := strings.Join(names, " "); got != "all api web web:80 web:8081" {
		t.Fatalf("List order = %s", got)
	}
}

func TestConcurrentWritersInProcess(t *testing.T) {
	s, _ := newTestStore(t)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 20 {
				if (i+j)%3 == 0 {
					if _, err := s.Up("web", 0); err != nil {
						t.Error(err)
					}
				} else if _, err := s.Down("web", 0, "r", time.Time{}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	entries, _ := os.ReadDir(s.Root())
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tempPrefix) {
			t.Errorf("temp file left behind: %s", e.Name())
		}
	}
	if m, ok := s.Read("web", 0); ok && m.Err != nil {
		t.Fatalf("torn mark: %v", m.Err)
	}
}

func TestEnsureRootCreatesWithMode(t *testing.T) {
	root := filepath.Join(t.TempDir(), "spool", "hacheck")
	if err := New(root).EnsureRoot(); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(root)
	if err != nil || info.Mode().Perm() != 0o750 {
		t.Fatalf("root mode = %v, %v; want 0750", info.Mode(), err)
	}
}

// Times past 2262 (where UnixNano overflows) are written and read back as they are.
func TestFarFutureTimes(t *testing.T) {
	s, clock := newTestStore(t)
	far := time.Unix(20000000000, 0) // the year 2603
	mustDown(t, s, "web", 0, "long", far)
	data, _ := os.ReadFile(filepath.Join(s.Root(), "web"))
	if !strings.Contains(string(data), `"expiration":20000000000`) {
		t.Fatalf("written %s", data)
	}
	if m, down := s.Status("web", 0); !down || !m.Expiration.Equal(far) {
		t.Fatalf("Status = %+v, %v", m, down)
	}
	if _, err := s.DownSince("api", 0, "r", time.Time{}, time.Unix(1<<41, 0)); err == nil {
		t.Fatal("a creation beyond the representable range must be refused")
	}
	_ = clock
}

func TestAllTakesNoPort(t *testing.T) {
	s, _ := newTestStore(t)
	if _, err := s.Down("all", 8080, "r", time.Time{}); err == nil || !strings.Contains(err.Error(), "takes none") {
		t.Fatalf("Down(all, 8080) = %v", err)
	}
	writeFile(t, s.Root(), "all:8080", "written by hand")
	if marks, _ := s.List(); len(marks) != 0 {
		t.Fatalf("all:8080 is no mark but was listed: %+v", marks)
	}
}

// Put writes drain and weight marks; Status and List give them back; Put refuses weights
// outside 0-256 and writes nothing then; a plain Down over a drain mark makes it a down mark.
func TestPutDrainAndWeight(t *testing.T) {
	s, clock := newTestStore(t)
	w := 30
	if _, err := s.Put(Mark{Service: "web", Port: 8080, Reason: "maintenance", Drain: true, Weight: &w}); err != nil {
		t.Fatal(err)
	}
	m, down := s.Status("web", 8080)
	if !down || !m.Drain || m.Weight == nil || *m.Weight != 30 || m.Reason != "maintenance" {
		t.Fatalf("Status = %+v, %v; want the drain mark with weight 30", m, down)
	}
	if marks, _ := s.List(); len(marks) != 1 || !marks[0].Drain || *marks[0].Weight != 30 {
		t.Fatalf("List = %+v", marks)
	}
	for _, bad := range []int{-1, 257} {
		if _, err := s.Put(Mark{Service: "api", Reason: "r", Weight: &bad}); err == nil || !strings.Contains(err.Error(), "weight") {
			t.Errorf("Put with weight %d: %v, want a refusal", bad, err)
		}
		if _, ok := s.Read("api", 0); ok {
			t.Errorf("refused weight %d was written", bad)
		}
	}
	clock.Advance(time.Minute)
	mustDown(t, s, "web", 8080, "maintenance", time.Time{})
	m, _ = s.Status("web", 8080)
	if m.Drain || m.Weight != nil || !m.Creation.Equal(clock.Now().Add(-time.Minute)) {
		t.Fatalf("after a plain down: %+v; want a down mark keeping its creation", m)
	}
}
