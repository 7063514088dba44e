package check

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSpoolAlwaysOK(t *testing.T) {
	got, err := NewRegistry(Options{})["spool"].Check(checkCtx(t, time.Second), Target{Service: "svc", Port: 0})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if want := (Result{Code: 200, Message: "", Outcome: OutcomeOK}); got != want {
		t.Errorf("Check = %+v, want %+v", got, want)
	}
}

// Every protocol answers a down mark with the same 503 and body, before any check runs.
func TestSpoolGateForEveryProtocol(t *testing.T) {
	backend := newCountingBackend(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	p, store := newTestPipeline(t, time.Minute)
	creation := time.Unix(1750000000, 0)
	if _, err := store.DownSince("web", 0, "Drained by Paasta", time.Time{}, creation); err != nil {
		t.Fatal(err)
	}
	want := "Service web in down state since 1750000000.000000: Drained by Paasta"
	for protocol := range p.Protocols() {
		a := p.Answer(Request{Protocol: protocol, Service: "web", Port: backend.port(), Query: "status", Header: http.Header{}})
		if a.Code != http.StatusServiceUnavailable || a.Body != want || a.Outcome != OutcomeSpoolDown {
			t.Errorf("%s: got %d %q %s; want 503 %q", protocol, a.Code, a.Body, a.Outcome, want)
		}
	}
	if backend.hits.Load() != 0 {
		t.Fatal("a service marked down must not be checked")
	}
}

// An entry under a mark's name that is not a regular file holds the service down, with the
// reason naming it, and is reported as unreadable so that the server logs it.
func TestSpoolGateOddEntry(t *testing.T) {
	p, store := newTestPipeline(t, time.Minute)
	if err := os.Symlink("/etc/passwd", filepath.Join(store.Root(), "web:8080")); err != nil {
		t.Fatal(err)
	}
	a := p.Answer(Request{Protocol: "spool", Service: "web", Port: "8080", Query: "status", Header: http.Header{}})
	if a.Code != http.StatusServiceUnavailable || !strings.HasPrefix(a.Body, "Service web in down state since ") ||
		!strings.HasSuffix(a.Body, ": symlink in the spool, not followed") || a.UnreadableMark == nil {
		t.Fatalf("got %d %q (unreadable %v); want 503 naming the symlink", a.Code, a.Body, a.UnreadableMark)
	}
}
