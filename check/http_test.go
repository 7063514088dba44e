package check

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// backendHandler is an upstream service with one path per behaviour a test needs.
func backendHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/code/{code}", func(w http.ResponseWriter, r *http.Request) {
		code, err := strconv.Atoi(r.PathValue("code"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(code)
		fmt.Fprintf(w, "body of %d", code)
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "/code/200")
		w.WriteHeader(http.StatusFound)
		fmt.Fprint(w, "moved")
	})
	// /echo/... answers with what arrived, so tests can see what the checker sent.
	mux.HandleFunc("/echo/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "uri=%s host=%s ua=%s svc=%q extra=%q",
			r.RequestURI, r.Host, r.UserAgent(), r.Header.Values("X-Service"), r.Header.Values("X-Extra"))
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(strings.Repeat("x", 1<<20)))
	})
	return mux
}

// serverPort returns the loopback port an httptest server listens on.
func serverPort(t *testing.T, srv *httptest.Server) int {
	t.Helper()
	addr, ok := srv.Listener.Addr().(*net.TCPAddr)
	if !ok || !addr.IP.IsLoopback() {
		t.Fatalf("test server listens on %v, want a loopback TCP address", srv.Listener.Addr())
	}
	return addr.Port
}

func TestHTTPPassthrough(t *testing.T) {
	plain := httptest.NewServer(backendHandler())
	t.Cleanup(plain.Close)
	secure := httptest.NewTLSServer(backendHandler())
	t.Cleanup(secure.Close)
	reg := NewRegistry(Options{Version: "1.2.3", ServiceNameHeader: "X-Service"})

	tests := []struct {
		name  string
		proto string
		srv   *httptest.Server
		t     Target
		want  Result
	}{
		{
			name: "2xx passed through", proto: "http", srv: plain,
			t:    Target{Query: "code/204"},
			want: Result{Code: 204, Message: "", Outcome: OutcomeOK},
		},
		{
			name: "200 body passed through", proto: "http", srv: plain,
			t:    Target{Query: "code/200"},
			want: Result{Code: 200, Message: "body of 200", Outcome: OutcomeOK},
		},
		{
			name: "5xx passed through", proto: "http", srv: plain,
			t:    Target{Query: "code/500"},
			want: Result{Code: 500, Message: "body of 500", Outcome: OutcomeUpstreamFail},
		},
		{
			name: "4xx passed through", proto: "http", srv: plain,
			t:    Target{Query: "code/404"},
			want: Result{Code: 404, Message: "body of 404", Outcome: OutcomeUpstreamFail},
		},
		{
			name: "redirect not followed", proto: "http", srv: plain,
			t:    Target{Query: "redirect"},
			want: Result{Code: 302, Message: "moved", Outcome: OutcomeUpstreamFail},
		},
		{
			name: "query string forwarded", proto: "http", srv: plain,
			t: Target{Service: "svc", Query: "echo/a/b", RawQuery: "x=1&y=%20"},
			want: Result{Code: 200, Outcome: OutcomeOK,
				Message: `uri=/echo/a/b?x=1&y=%20 host=127.0.0.1:PORT ua=hacheck/1.2.3 svc=["svc"] extra=[]`},
		},
		{
			name: "no question mark without query string", proto: "http", srv: plain,
			t: Target{Service: "svc", Query: "echo/"},
			want: Result{Code: 200, Outcome: OutcomeOK,
				Message: `uri=/echo/ host=127.0.0.1:PORT ua=hacheck/1.2.3 svc=["svc"] extra=[]`},
		},
		{
			name: "forwarded headers and Host", proto: "http", srv: plain,
			t: Target{Service: "web", Query: "echo/", Header: http.Header{
				"Host":    {"www.example.com"},
				"X-Extra": {"one", "two"},
			}},
			want: Result{Code: 200, Outcome: OutcomeOK,
				Message: `uri=/echo/ host=www.example.com ua=hacheck/1.2.3 svc=["web"] extra=["one" "two"]`},
		},
		{
			name: "forwarded header cannot replace the service name", proto: "http", srv: plain,
			t: Target{Service: "web", Query: "echo/", Header: http.Header{"X-Service": {"other"}}},
			want: Result{Code: 200, Outcome: OutcomeOK,
				Message: `uri=/echo/ host=127.0.0.1:PORT ua=hacheck/1.2.3 svc=["web"] extra=[]`},
		},
		{
			name: "https body passed through", proto: "https", srv: secure,
			t:    Target{Query: "code/200"},
			want: Result{Code: 200, Message: "body of 200", Outcome: OutcomeOK},
		},
		{
			name: "https 5xx passed through", proto: "https", srv: secure,
			t:    Target{Query: "code/503"},
			want: Result{Code: 503, Message: "body of 503", Outcome: OutcomeUpstreamFail},
		},
		{
			name: "https headers", proto: "https", srv: secure,
			t: Target{Service: "web", Query: "echo/x", RawQuery: "q", Header: http.Header{"Host": {"www.example.com"}}},
			want: Result{Code: 200, Outcome: OutcomeOK,
				Message: `uri=/echo/x?q host=www.example.com ua=hacheck/1.2.3 svc=["web"] extra=[]`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port := serverPort(t, tt.srv)
			tt.t.Port = port
			tt.want.Message = strings.ReplaceAll(tt.want.Message, "PORT", strconv.Itoa(port))
			got, err := reg[tt.proto].Check(checkCtx(t, 5*time.Second), tt.t)
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if got != tt.want {
				t.Errorf("Check =\n %+v\nwant\n %+v", got, tt.want)
			}
		})
	}
}

func TestHTTPBodyCapped(t *testing.T) {
	srv := httptest.NewServer(backendHandler())
	t.Cleanup(srv.Close)

	for _, limit := range []int64{0, 10} {
		t.Run(fmt.Sprintf("limit %d", limit), func(t *testing.T) {
			want := limit
			if want == 0 {
				want = DefaultBodyLimit
			}
			got, err := NewRegistry(Options{BodyLimit: limit})["http"].Check(checkCtx(t, 5*time.Second), Target{Port: serverPort(t, srv), Query: "big"})
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			note := fmt.Sprintf("\n[hacheck: body truncated at %d bytes]", want)
			wantMsg := strings.Repeat("x", int(want)) + note
			if got.Code != 200 || got.Outcome != OutcomeOK || got.Message != wantMsg {
				t.Errorf("Check = {Code:%d Outcome:%s Message: %d bytes ending %q}, want 200 ok with %d bytes then %q",
					got.Code, got.Outcome, len(got.Message), got.Message[max(0, len(got.Message)-60):], want, note)
			}
		})
	}
}

func TestHTTPBodyAtLimitNotTruncated(t *testing.T) {
	srv := httptest.NewServer(backendHandler())
	t.Cleanup(srv.Close)
	body := "body of 200" // exactly the limit below
	got, err := NewRegistry(Options{BodyLimit: int64(len(body))})["http"].Check(checkCtx(t, 5*time.Second), Target{Port: serverPort(t, srv), Query: "code/200"})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if got.Message != body {
		t.Errorf("Message = %q, want %q", got.Message, body)
	}
}

func TestHTTPTransportFailures(t *testing.T) {
	release := make(chan struct{})
	hung := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/mid-body" {
			w.Write([]byte("partial"))
			w.(http.Flusher).Flush()
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(hung.Close)
	// Registered after hung.Close so it runs first: Close waits for the handlers.
	t.Cleanup(func() { close(release) })

	tests := []struct {
		name    string
		port    int
		query   string
		outcome Outcome
		msg     *regexp.Regexp
	}{
		{"hung before headers", serverPort(t, hung), "", OutcomeTimeout, regexp.MustCompile(`deadline exceeded.* after \d+\.\d{3}s$`)},
		{"hung mid-body", serverPort(t, hung), "mid-body", OutcomeTimeout, regexp.MustCompile(`^reading body of 200 response: .* after \d+\.\d{3}s$`)},
		{"refused", closedPort(t), "", OutcomeRefused, regexp.MustCompile(`connection refused after \d+\.\d{3}s$`)},
	}
	checker := NewRegistry(Options{})["http"]
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := checker.Check(checkCtx(t, 200*time.Millisecond), Target{Service: "svc", Port: tt.port, Query: tt.query})
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if got.Code != 503 || got.Outcome != tt.outcome || !tt.msg.MatchString(got.Message) {
				t.Errorf("Check = %+v, want code 503, outcome %s, message matching %s", got, tt.outcome, tt.msg)
			}
		})
	}
}

func TestHTTPSAgainstPlainServerFails(t *testing.T) {
	plain := httptest.NewServer(backendHandler())
	t.Cleanup(plain.Close)
	got, err := NewRegistry(Options{})["https"].Check(checkCtx(t, 5*time.Second), Target{Port: serverPort(t, plain), Query: "code/200"})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if got.Code != 503 || got.Outcome != OutcomeUpstreamFail {
		t.Errorf("Check = %+v, want 503 upstream_fail", got)
	}
}
