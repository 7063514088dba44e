package check

import (
	"net/http"
	"testing"
	"time"

	"github.com/hacheck/hacheck/spool"
)

// A weight-only mark (hacheck weight) changes no check answer: the service is checked as if
// there were no mark.
func TestWeightOnlyMarkChangesNoAnswer(t *testing.T) {
	backend := newCountingBackend(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	p, store := newTestPipeline(t, time.Minute)
	weight := 30
	if _, err := store.Put(spool.Mark{Service: "web", Reason: "canary", Weight: &weight}); err != nil {
		t.Fatal(err)
	}
	if a := p.Answer(Request{Protocol: "http", Service: "web", Port: backend.port(), Header: http.Header{}}); a.Code != http.StatusOK || a.Body != "ok" {
		t.Errorf("http with a weight-only mark: %d %q, want the service's own answer", a.Code, a.Body)
	}
	if a := p.Answer(Request{Protocol: "spool", Service: "web", Port: "0", Header: http.Header{}}); a.Code != http.StatusOK {
		t.Errorf("spool with a weight-only mark: %d %q, want 200", a.Code, a.Body)
	}
}
