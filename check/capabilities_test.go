package check

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/hacheck/hacheck/spool"
)

// What each registered protocol says it can do: a change here changes what HAProxy sees.
func TestRegistryCapabilities(t *testing.T) {
	reg := NewRegistry(Options{})
	tests := []struct {
		protocol                     string
		needsPort, drains404, cached bool
	}{
		{"spool", false, true, false},
		{"http", true, true, true},
		{"https", true, true, true},
		{"tcp", true, false, true},
		{"mysql", true, false, true},
		{"postgres", true, false, true},
		{"redis", true, false, true},
		{"sentinel", true, false, true},
		{"redis-info", true, false, true},
		{"sentinel-info", true, false, true},
		{"haproxy", true, false, true},
		{"smtp", true, false, true},
		{"grpc", true, false, true},
	}
	if len(tests) != len(reg) {
		t.Errorf("%d protocols in the table, %d registered: %q", len(tests), len(reg), reg.Names())
	}
	for _, tt := range tests {
		c, ok := reg[tt.protocol]
		if !ok {
			t.Errorf("%s: not registered", tt.protocol)
			continue
		}
		_, uncached := c.(Uncached)
		if NeedsPort(c) != tt.needsPort || DrainAnswers404(c) != tt.drains404 || !uncached != tt.cached {
			t.Errorf("%s: needs a port %v, 404 on drain %v, cached %v; want %v, %v, %v", tt.protocol,
				NeedsPort(c), DrainAnswers404(c), !uncached, tt.needsPort, tt.drains404, tt.cached)
		}
	}
}

// portlessDrainer is a protocol of no name hacheck knows that takes port 0 and drains with 404.
type portlessDrainer struct{ CheckerFunc }

func (portlessDrainer) Portless()      {}
func (portlessDrainer) DrainsWith404() {}

// The pipeline asks the checker, not the protocol's name: a new protocol gets port 0 and the
// drain 404 by implementing the interfaces, and loses them by not implementing them.
func TestPipelineAsksTheChecker(t *testing.T) {
	ok := CheckerFunc(func(context.Context, Target) (Result, error) { return Result{Code: 200, Outcome: OutcomeOK}, nil })
	store := spool.New(t.TempDir())
	p := NewPipeline(store, Settings{CacheTTL: time.Minute, CheckTimeout: 5 * time.Second,
		Checkers: Registry{"custom": portlessDrainer{ok}, "plain": ok, "spool": ok}}, nil)
	ask := func(protocol, port string) Answer {
		return p.Answer(Request{Protocol: protocol, Service: "web", Port: port, Header: http.Header{}})
	}
	if a := ask("custom", "0"); a.Code != 200 {
		t.Errorf("portless checker, port 0: %d %q", a.Code, a.Body)
	}
	for _, protocol := range []string{"plain", "spool"} {
		if a := ask(protocol, "0"); a.Code != 400 {
			t.Errorf("%s checker without Portless, port 0: %d %q, want 400", protocol, a.Code, a.Body)
		}
	}
	if _, err := store.Put(spool.Mark{Service: "web", Reason: "deploy", Drain: true}); err != nil {
		t.Fatal(err)
	}
	for protocol, want := range map[string]int{"custom": 404, "plain": 503, "spool": 503} {
		if a := ask(protocol, "80"); a.Code != want || a.Outcome != OutcomeSpoolDown {
			t.Errorf("%s checker on a drain mark: %d %s, want %d", protocol, a.Code, a.Outcome, want)
		}
	}
}
