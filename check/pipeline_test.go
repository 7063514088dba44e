package check

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hacheck/hacheck/spool"
)

func newTestPipeline(t *testing.T, ttl time.Duration) (*Pipeline, *spool.Store) {
	t.Helper()
	store := spool.New(t.TempDir())
	p := NewPipeline(store, Settings{
		CacheTTL:      ttl,
		CheckTimeout:  5 * time.Second,
		HeadersToCopy: []string{"host"},
		Checkers:      NewRegistry(Options{Version: "test", ServiceNameHeader: "X-Service", PostgresUsername: "hacheck"}),
	}, nil)
	return p, store
}

// countingBackend is a local service that counts the checks it receives.
type countingBackend struct {
	*httptest.Server
	hits atomic.Int64
}

func newCountingBackend(t *testing.T, handler http.HandlerFunc) *countingBackend {
	t.Helper()
	b := &countingBackend{}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		handler(w, r)
	}))
	t.Cleanup(b.Close)
	return b
}

func (b *countingBackend) port() string {
	return strconv.Itoa(b.Listener.Addr().(*net.TCPAddr).Port)
}

func TestValidation(t *testing.T) {
	p, _ := newTestPipeline(t, time.Second)
	tests := []struct {
		protocol, service, port string
		code                    int
		bodyHas                 string
	}{
		{"gopher", "web", "80", 404, `unknown protocol "gopher"`},
		{"http", "../etc", "80", 400, "must not start with '.'"},
		{"http", "", "80", 400, "empty"},
		{"http", strings.Repeat("a", 129), "80", 400, "at most 128"},
		{"http", "web", "0", 400, "invalid port 0: must be 1-65535"},
		{"http", "web", "65536", 400, "must be 0-65535"},
		{"http", "web", "-1", 400, "decimal number"},
		{"http", "web", "+80", 400, "decimal number"},
		{"http", "web", "0x50", 400, "decimal number"},
		{"http", "web", "", 400, "decimal number"},
		{"http", "web", "99999999999999999999", 400, "decimal number"},
		{"tcp", "web", "0", 400, "invalid port 0: must be 1-65535"},
		{"spool", "web", "70000", 400, "must be 0-65535"},
		{"spool", "web", "0", 200, ""},
	}
	for _, tt := range tests {
		a := p.Answer(Request{Protocol: tt.protocol, Service: tt.service, Port: tt.port, Header: http.Header{}})
		if a.Code != tt.code || !strings.Contains(a.Body, tt.bodyHas) || strings.Contains(a.Body, "\n") {
			t.Errorf("%s/%s/%s = %d %q; want %d with %q on one line", tt.protocol, tt.service, tt.port, a.Code, a.Body, tt.code, tt.bodyHas)
		}
	}
}

func TestSpoolGate(t *testing.T) {
	creation := time.Unix(1750000000, 250000000)
	expiration := time.Now().Add(time.Hour).Truncate(time.Second)
	until := strconv.FormatInt(expiration.Unix(), 10) + ".000000"
	type mark struct {
		reason     string
		expiration time.Time
	}
	tests := []struct {
		name    string
		marks   map[string]mark
		port    string
		code    int
		body    string
		outcome Outcome
	}{
		{"up", nil, "8080", 200, "ok", OutcomeOK},
		{"service down", map[string]mark{"web": {"deploy", time.Time{}}}, "8080", 503,
			"Service web in down state since 1750000000.250000: deploy", OutcomeSpoolDown},
		{"service down until", map[string]mark{"web": {"deploy", expiration}}, "8080", 503,
			"Service web in down state since 1750000000.250000 until " + until + ": deploy", OutcomeSpoolDown},
		{"service down, no reason", map[string]mark{"web": {"", time.Time{}}}, "8080", 503,
			"Service web in down state since 1750000000.250000", OutcomeSpoolDown},
		{"instance down names the service", map[string]mark{"web:PORT": {"disk", expiration}}, "8080", 503,
			"Service web in down state since 1750000000.250000 until " + until + ": disk", OutcomeSpoolDown},
		{"all names all", map[string]mark{"all": {"rack", time.Time{}}}, "8080", 503,
			"Service all in down state since 1750000000.250000: rack", OutcomeSpoolDown},
		{"other instance", map[string]mark{"web:1": {"disk", time.Time{}}}, "8080", 200, "ok", OutcomeOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			backend := newCountingBackend(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
			p, store := newTestPipeline(t, time.Minute)
			for name, m := range tt.marks {
				name = strings.ReplaceAll(name, "PORT", backend.port())
				service, port, _ := spool.ParseFileName(name)
				if _, err := store.DownSince(service, port, m.reason, m.expiration, creation); err != nil {
					t.Fatal(err)
				}
			}
			a := p.Answer(Request{Protocol: "http", Service: "web", Port: backend.port(), Header: http.Header{}})
			if a.Code != tt.code || a.Body != tt.body || a.Outcome != tt.outcome {
				t.Fatalf("got %d %q %s; want %d %q %s", a.Code, a.Body, a.Outcome, tt.code, tt.body, tt.outcome)
			}
			if tt.outcome == OutcomeSpoolDown && backend.hits.Load() != 0 {
				t.Fatal("a service marked down must not be checked")
			}
		})
	}
}

func TestSpoolIsNeverCached(t *testing.T) {
	p, store := newTestPipeline(t, time.Hour)
	ask := func() Answer {
		return p.Answer(Request{Protocol: "spool", Service: "web", Port: "0", Header: http.Header{}})
	}
	if a := ask(); a.Code != 200 {
		t.Fatalf("got %d", a.Code)
	}
	store.Down("web", 0, "now", time.Time{})
	if a := ask(); a.Code != 503 {
		t.Fatalf("mark not seen by the very next request: %d %q", a.Code, a.Body)
	}
	store.Up("web", 0)
	if a := ask(); a.Code != 200 {
		t.Fatalf("removal not seen by the very next request: %d", a.Code)
	}
}

func TestServerStateHeaderPicksPort(t *testing.T) {
	backend := newCountingBackend(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("real")) })
	p, store := newTestPipeline(t, time.Minute)
	header := http.Header{}
	header.Set("x-haproxy-server-state", "UP 2/3; address=127.0.0.1; port="+backend.port()+"; name=be/app1; node=lb1; weight=1/1; scur=0/0; qcur=0")
	// The URL's port is nobody's: only the header's port can reach the backend.
	a := p.Answer(Request{Protocol: "http", Service: "web", Port: "1", Header: header})
	if a.Code != 200 || a.Body != "real" {
		t.Fatalf("got %d %q; want the header's port to be checked", a.Code, a.Body)
	}
	if _, err := store.Down("web", a.Port, "one instance", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if a := p.Answer(Request{Protocol: "http", Service: "web", Port: "1", Header: header}); a.Code != 503 {
		t.Fatalf("per-port mark of the header's port not applied: %d", a.Code)
	}
}

// SmartStack's synapse writes every backend as `option httpchk GET /http/<service>/0/<path>`
// with `http-check send-state`: the URL's port is a dummy 0 and HAProxy passes the real port in
// the header. Every protocol that connects to a port must take it from there.
func TestPortZeroTakesTheHeadersPort(t *testing.T) {
	backend := newCountingBackend(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("OK")) })
	p, store := newTestPipeline(t, time.Minute)
	state := func(port string) http.Header {
		h := http.Header{}
		h.Set("X-Haproxy-Server-State", "UP; address=127.0.0.1; port="+port+"; name=be_web/srv1; node=lb1; weight=1/2; scur=0/0; qcur=0")
		return h
	}
	// Every protocol but spool connects to a port: with the header, port 0 is checked on the
	// header's port (here a closed one, so every checker answers at once; the answer is a
	// failure, never the URL's 400).
	closed := closedPort(t)
	for _, protocol := range p.Protocols().Names() {
		a := p.Answer(Request{Protocol: protocol, Service: "web", Port: "0", Header: state(strconv.Itoa(closed))})
		if strings.Contains(a.Body, "invalid port") || a.Port != closed {
			t.Errorf("%s/web/0 with send-state = %d %q on port %d; want port %d checked", protocol, a.Code, a.Body, a.Port, closed)
		}
		if !NeedsPort(p.Protocols()[protocol]) {
			continue
		}
		for _, header := range []http.Header{{}, state("0"), state("70000"), state("x"), {"X-Haproxy-Server-State": {"UP; address=127.0.0.1"}}} {
			a := p.Answer(Request{Protocol: protocol, Service: "web", Port: "0", Header: header})
			if a.Code != 400 || !strings.Contains(a.Body, "invalid port 0") {
				t.Errorf("%s/web/0 with header %q = %d %q; want 400 invalid port 0", protocol, header, a.Code, a.Body)
			}
		}
	}
	tests := []struct {
		protocol string
		code     int
		body     string
	}{
		{"http", 200, "OK"},
		{"tcp", 200, "Connected in"},
	}
	for _, tt := range tests {
		a := p.Answer(Request{Protocol: tt.protocol, Service: "web", Port: "0", Query: "status", Header: state(backend.port())})
		if a.Code != tt.code || !strings.Contains(a.Body, tt.body) {
			t.Errorf("%s/web/0/status with send-state = %d %q; want %d %q", tt.protocol, a.Code, a.Body, tt.code, tt.body)
		}
	}
	// A mark on the real instance (hadown -P <port>) holds the port-0 URL down.
	if _, err := store.Down("web", backend.Listener.Addr().(*net.TCPAddr).Port, "one instance", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if a := p.Answer(Request{Protocol: "http", Service: "web", Port: "0", Header: state(backend.port())}); a.Code != 503 {
		t.Fatalf("instance mark not applied to the port-0 URL: %d %q", a.Code, a.Body)
	}
}

func TestParseServerStatePort(t *testing.T) {
	tests := []struct {
		header string
		port   int
		ok     bool
	}{
		{"UP; address=127.0.0.1; port=18080; name=be_app/app1; node=lb1; weight=1/1; scur=0/0; qcur=0", 18080, true},
		{"DOWN 1/2; address=10.0.0.1; port=80; name=b/s", 80, true},
		{"UP; port=8080; throttle=50%", 8080, true},
		{"UP;port=443", 443, true},
		{"UP; PORT=443", 443, true},
		{"UP; address=127.0.0.1", 0, false},
		{"UP; port=0", 0, false},
		{"UP; port=65536", 0, false},
		{"UP; port=abc", 0, false},
		{"UP; port=", 0, false},
		{"UP; port=+80", 0, false},
		{"", 0, false},
		{"UP; name=port=80", 0, false},
	}
	for _, tt := range tests {
		port, ok := ParseServerStatePort(tt.header)
		if port != tt.port || ok != tt.ok {
			t.Errorf("ParseServerStatePort(%q) = %d, %v; want %d, %v", tt.header, port, ok, tt.port, tt.ok)
		}
	}
}

func FuzzParseServerStatePort(f *testing.F) {
	for _, seed := range []string{"UP; address=127.0.0.1; port=18080; name=be/app1", "UP 2/3; port=1", "port=65535", "port=65536", ";;;", "port==1"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, header string) {
		port, ok := ParseServerStatePort(header)
		if ok != (port >= 1 && port <= 65535) {
			t.Fatalf("ParseServerStatePort(%q) = %d, %v", header, port, ok)
		}
	})
}

func TestHTTPCheckForwardsAndCaches(t *testing.T) {
	var gotHost, gotService, gotPath string
	backend := newCountingBackend(t, func(w http.ResponseWriter, r *http.Request) {
		gotHost, gotService, gotPath = r.Host, r.Header.Get("X-Service"), r.URL.RequestURI()
		w.WriteHeader(http.StatusTeapot)
		w.Write([]byte("short and stout"))
	})
	p, _ := newTestPipeline(t, time.Hour)
	req := Request{Protocol: "http", Service: "web", Port: backend.port(), Query: "health/deep", RawQuery: "a=b", Host: "web.example", Header: http.Header{}}
	a := p.Answer(req)
	if a.Code != http.StatusTeapot || a.Body != "short and stout" || a.Cache != CacheMiss {
		t.Fatalf("got %+v", a)
	}
	if gotHost != "web.example" || gotService != "web" || gotPath != "/health/deep?a=b" {
		t.Fatalf("backend saw host %q service %q path %q", gotHost, gotService, gotPath)
	}
	for range 5 {
		if a := p.Answer(req); a.Cache != CacheHit || a.Code != http.StatusTeapot {
			t.Fatalf("repeat within cache_time: %+v", a)
		}
	}
	if n := backend.hits.Load(); n != 1 {
		t.Fatalf("backend checked %d times within cache_time, want 1", n)
	}
	bypass := req
	bypass.NoCache = true
	if a := p.Answer(bypass); a.Cache != CacheBypass {
		t.Fatalf("Pragma: no-cache: %+v", a)
	}
	if n := backend.hits.Load(); n != 2 {
		t.Fatalf("Pragma: no-cache made %d checks in all, want 2", n)
	}
	other := req
	other.Host = "other.example"
	if a := p.Answer(other); a.Cache != CacheMiss {
		t.Fatalf("a different forwarded Host must be a different cache key: %+v", a)
	}
}

func TestFailuresAreCachedToo(t *testing.T) {
	backend := newCountingBackend(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	p, _ := newTestPipeline(t, time.Hour)
	for range 3 {
		if a := p.Answer(Request{Protocol: "http", Service: "web", Port: backend.port(), Header: http.Header{}}); a.Code != 500 || a.Outcome != OutcomeUpstreamFail {
			t.Fatalf("got %+v", a)
		}
	}
	if n := backend.hits.Load(); n != 1 {
		t.Fatalf("failing service checked %d times, want 1", n)
	}
}

func TestZeroTTLChecksEveryTime(t *testing.T) {
	backend := newCountingBackend(t, func(w http.ResponseWriter, r *http.Request) {})
	p, _ := newTestPipeline(t, 0)
	for range 3 {
		p.Answer(Request{Protocol: "http", Service: "web", Port: backend.port(), Header: http.Header{}})
	}
	if n := backend.hits.Load(); n != 3 {
		t.Fatalf("cache_time 0 made %d checks, want 3", n)
	}
}

// A hundred concurrent requests for one cold key, against a service that takes a while:
// the service sees exactly one check and every request gets its answer.
func TestConcurrentMissesCoalesce(t *testing.T) {
	release := make(chan struct{})
	backend := newCountingBackend(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Write([]byte("slow but fine"))
	})
	p, _ := newTestPipeline(t, time.Hour)
	var wg sync.WaitGroup
	answers := make(chan Answer, 100)
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers <- p.Answer(Request{Protocol: "http", Service: "web", Port: backend.port(), Header: http.Header{}})
		}()
	}
	// Release the service once every other request is waiting on the one in flight (or was
	// served after it); the cache's own counters say when.
	for p.Cache().Stats().Gets < 100 {
		runtimeYield()
	}
	close(release)
	wg.Wait()
	close(answers)
	kinds := map[CacheResult]int{}
	for a := range answers {
		if a.Code != 200 || a.Body != "slow but fine" {
			t.Fatalf("got %+v", a)
		}
		kinds[a.Cache]++
	}
	if n := backend.hits.Load(); n != 1 {
		t.Fatalf("100 concurrent cold requests made %d upstream checks, want 1", n)
	}
	if kinds[CacheMiss] != 1 || kinds[CacheMiss]+kinds[CacheCoalesced]+kinds[CacheHit] != 100 {
		t.Fatalf("cache results %v", kinds)
	}
}

// A hung service does not hold other services' checks: they are answered while its check is
// still in flight, and its own answer, when it comes, is its own. The hung backend is released
// by the test, not by check_timeout, so that the order holds however slow the machine is; that a
// hung check ends at check_timeout is TestNoLeakOnHungUpstreams' and the checkers' tests' part.
func TestHungServiceDoesNotHoldOthers(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	hung := newCountingBackend(t, func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		select {
		case <-release:
			w.Write([]byte("late"))
		case <-r.Context().Done():
		}
	})
	healthy := newCountingBackend(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("fine")) })
	p, _ := newTestPipeline(t, 0)
	s := *p.settings.Load()
	s.CheckTimeout = time.Hour // the hung check ends when the test releases it
	p.Configure(s)

	hungDone := make(chan Answer, 1)
	go func() {
		hungDone <- p.Answer(Request{Protocol: "http", Service: "stuck", Port: hung.port(), Header: http.Header{}})
	}()
	<-entered
	for i := range 20 {
		a := p.Answer(Request{Protocol: "http", Service: "web" + strconv.Itoa(i), Port: healthy.port(), Header: http.Header{}})
		if a.Code != 200 {
			t.Fatalf("healthy check during a hung one: %+v", a)
		}
		select {
		case a := <-hungDone:
			t.Fatalf("hung check returned before it was released: %+v", a)
		default:
		}
	}
	close(release)
	if a := <-hungDone; a.Code != 200 || !strings.Contains(string(a.Body), "late") {
		t.Fatalf("hung service once released: %+v; want its own 200 answer", a)
	}
}

type panickyChecker struct{}

func (panickyChecker) Check(ctx context.Context, t Target) (Result, error) { panic("boom") }

func TestPanickingCheckerIsAnError(t *testing.T) {
	p, _ := newTestPipeline(t, time.Minute)
	s := *p.settings.Load()
	s.Checkers = Registry{"boom": panickyChecker{}}
	p.Configure(s)
	a := p.Answer(Request{Protocol: "boom", Service: "web", Port: "1", Header: http.Header{}})
	if a.Code != 503 || a.Outcome != OutcomeError {
		t.Fatalf("got %+v", a)
	}
}

func TestCodesOutsideHTTPBecome503(t *testing.T) {
	for _, code := range []int{0, 99, 600, -1} {
		p, _ := newTestPipeline(t, time.Minute)
		s := *p.settings.Load()
		s.Checkers = Registry{"odd": CheckerFunc(func(context.Context, Target) (Result, error) {
			return Result{Code: code, Message: "odd", Outcome: OutcomeUpstreamFail}, nil
		})}
		p.Configure(s)
		if a := p.Answer(Request{Protocol: "odd", Service: "web", Port: "1", Header: http.Header{}}); a.Code != 503 {
			t.Errorf("checker code %d answered %d, want 503", code, a.Code)
		}
	}
}

func runtimeYield() { runtime.Gosched() }

func TestLongQueryRefused(t *testing.T) {
	p, _ := newTestPipeline(t, time.Minute)
	a := p.Answer(Request{Protocol: "http", Service: "web", Port: "80", Query: strings.Repeat("a", MaxQueryLen+1), Header: http.Header{}})
	if a.Code != http.StatusRequestURITooLong {
		t.Fatalf("got %d %q", a.Code, a.Body)
	}
}

// An expired key keeps its last result through sweeps for a while, so its next check is
// compared with it: a service that stays down is not logged DOWN again, and its recovery is.
func TestTransitionsSurviveSweeps(t *testing.T) {
	c := NewCache()
	now := time.Now()
	down := func() Result { return Result{Code: 503, Outcome: OutcomeUpstreamFail} }
	up := func() Result { return Result{Code: 200, Outcome: OutcomeOK} }
	if _, _, changed, _ := c.Get([]byte("web"), now, time.Second, false, down); !changed {
		t.Fatal("first unhealthy result must count as a change")
	}
	// Other keys arrive later and trigger sweeps while web's result has expired.
	for i := range 5 {
		now = now.Add(2 * time.Second)
		c.Get([]byte("other"+strconv.Itoa(i)), now, time.Second, false, up)
	}
	if _, kind, changed, _ := c.Get([]byte("web"), now, time.Second, false, down); kind != CacheMiss || changed {
		t.Fatalf("still down after sweeps: kind %s changed %v; want a miss that is no change", kind, changed)
	}
	now = now.Add(2 * time.Second)
	if _, _, changed, _ := c.Get([]byte("web"), now, time.Second, false, up); !changed {
		t.Fatal("recovery not reported as a change")
	}
}

// While a Pragma: no-cache refresh is in flight, ordinary requests are answered from the
// still-fresh result instead of waiting for the refresh.
func TestBypassDoesNotBlockFreshHits(t *testing.T) {
	c := NewCache()
	now := time.Now()
	c.Get([]byte("web"), now, time.Hour, false, func() Result { return Result{Code: 200, Message: "old", Outcome: OutcomeOK} })
	release, started := make(chan struct{}), make(chan struct{})
	done := make(chan Result)
	go func() {
		r, _, _, _ := c.Get([]byte("web"), now, time.Hour, true, func() Result {
			close(started)
			<-release
			return Result{Code: 200, Message: "new", Outcome: OutcomeOK}
		})
		done <- r
	}()
	<-started
	if r, kind, _, _ := c.Get([]byte("web"), now, time.Hour, false, nil); kind != CacheHit || r.Message != "old" {
		t.Fatalf("during a bypass refresh: %s %q; want a hit on the fresh result", kind, r.Message)
	}
	close(release)
	if r := <-done; r.Message != "new" {
		t.Fatalf("bypass got %q", r.Message)
	}
	if r, kind, _, _ := c.Get([]byte("web"), now, time.Hour, false, nil); kind != CacheHit || r.Message != "new" {
		t.Fatalf("after the refresh: %s %q", kind, r.Message)
	}
}

// A fill whose goroutine exits (runtime.Goexit, as t.FailNow does) must not leave waiters
// hanging.
func TestFillGoexitReleasesWaiters(t *testing.T) {
	c := NewCache()
	now := time.Now()
	started := make(chan struct{})
	proceed := make(chan struct{})
	go func() {
		c.Get([]byte("web"), now, time.Hour, false, func() Result {
			close(started)
			<-proceed
			runtime.Goexit()
			return Result{}
		})
	}()
	<-started
	waiter := make(chan Result)
	go func() {
		r, _, _, _ := c.Get([]byte("web"), now, time.Hour, false, nil)
		waiter <- r
	}()
	for c.Stats().Coalesced == 0 {
		runtime.Gosched()
	}
	close(proceed)
	if r := <-waiter; r.Outcome != OutcomeError {
		t.Fatalf("waiter got %+v; want the internal-error result", r)
	}
}

// An answer from the cache carries its entry's memo: the same one for every answer of a key,
// whatever the cache said (miss, hit, bypass), another for another key, and none when the
// spool gate answered.
func TestAnswersCarryTheirEntrysMemo(t *testing.T) {
	backend := newCountingBackend(t, func(w http.ResponseWriter, r *http.Request) {})
	p, store := newTestPipeline(t, time.Hour)
	req := Request{Protocol: "http", Service: "web", Port: backend.port(), Query: "health", Header: http.Header{}}
	first := p.Answer(req)
	if first.Memo == nil {
		t.Fatal("a checked answer has no memo")
	}
	bypass := req
	bypass.NoCache = true
	for _, r := range []Request{req, bypass, req} {
		if a := p.Answer(r); a.Memo != first.Memo {
			t.Errorf("%s answer of the same key: another memo", a.Cache)
		}
	}
	other := req
	other.Service = "api"
	if a := p.Answer(other); a.Memo == nil || a.Memo == first.Memo {
		t.Errorf("another key's memo: %p, first key's %p", a.Memo, first.Memo)
	}
	if _, err := store.Down("web", 0, "maintenance", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if a := p.Answer(req); a.Outcome != OutcomeSpoolDown || a.Memo != nil {
		t.Errorf("spool-gate answer: outcome %s, memo %p; want spool_down and none", a.Outcome, a.Memo)
	}
}

// TestDrainMark: a drain mark answers http(s) and spool checks 404 in the down body's shape
// with the state word "drain" (HAProxy's disable-on-404 then drains the server), every other
// protocol 503 as a down mark; a down mark elsewhere in the hierarchy still wins.
func TestDrainMark(t *testing.T) {
	creation := time.Unix(1750000000, 250000000)
	tests := []struct {
		name     string
		marks    []spool.Mark
		protocol string
		code     int
		body     string
	}{
		{"http", []spool.Mark{{Service: "web", Reason: "deploy", Drain: true}}, "http", 404,
			"Service web in drain state since 1750000000.250000: deploy"},
		{"spool", []spool.Mark{{Service: "web", Reason: "deploy", Drain: true}}, "spool", 404,
			"Service web in drain state since 1750000000.250000: deploy"},
		{"instance drain", []spool.Mark{{Service: "web", Port: 8080, Drain: true}}, "spool", 404,
			"Service web in drain state since 1750000000.250000"},
		{"tcp cannot drain", []spool.Mark{{Service: "web", Reason: "deploy", Drain: true}}, "tcp", 503,
			"Service web in down state since 1750000000.250000: deploy"},
		{"host-wide down over an instance drain", []spool.Mark{{Service: "web", Port: 8080, Drain: true}, {Service: "all", Reason: "rack"}}, "spool", 503,
			"Service all in down state since 1750000000.250000: rack"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, store := newTestPipeline(t, time.Minute)
			for _, m := range tt.marks {
				m.Creation = creation
				if _, err := store.Put(m); err != nil {
					t.Fatal(err)
				}
			}
			a := p.Answer(Request{Protocol: tt.protocol, Service: "web", Port: "8080", Query: "health"})
			if a.Code != tt.code || a.Body != tt.body || a.Outcome != OutcomeSpoolDown {
				t.Errorf("answer %d %q (%s), want %d %q (spool_down)", a.Code, a.Body, a.Outcome, tt.code, tt.body)
			}
		})
	}
}
