package server

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hacheck/hacheck/check"
	"github.com/hacheck/hacheck/config"
	"github.com/hacheck/hacheck/spool"
)

// FuzzCheckRequest sends arbitrary request targets and X-Haproxy-Server-State headers through
// the check route: the path's split into protocol, service, port and query, the pipeline's
// validation and the header's port. Every protocol but spool is a stub, so nothing is dialled.
// Whatever comes in, the answer is an HTTP status and never a 500, and a check only ever runs
// for a valid service name, a port of 1-65535 and a query within its cap.
func FuzzCheckRequest(f *testing.F) {
	for _, seed := range [][2]string{
		{"/http/web/8080/health", ""},
		{"/http/web/8080/health?a=b&c", "UP 2/3; address=127.0.0.1; port=9090; name=be/srv"},
		{"/tcp/db/3306", "port=0"},
		{"/http/../../etc/passwd/80/", "port=65536"},
		{"/http/web/0x50/", "port= 80"},
		{"/http/web/80/%2e%2e/x?q=%00", "PORT=8080;port=1"},
		{"//http/web/80", ";;;"},
		{"/spool/web/0/", ""},
		{"/http/web/99999/", "port=+80"},
		{"/gopher/web/80/x", ""},
		{"/http/" + strings.Repeat("s", 200) + "/80/", ""},
		{"/http/web/80/" + strings.Repeat("q", 1100), ""},
	} {
		f.Add(seed[0], seed[1])
	}
	srv := New(config.Default(), Options{Store: spool.New(f.TempDir()), Version: "test", Logger: zerolog.Nop()})
	var mu sync.Mutex
	var bad []string
	stub := check.CheckerFunc(func(_ context.Context, t check.Target) (check.Result, error) {
		var problems []string
		if err := spool.ValidateName(t.Service); err != nil {
			problems = append(problems, "service: "+err.Error())
		}
		if t.Port < 1 || t.Port > 65535 {
			problems = append(problems, "port out of range")
		}
		if len(t.Query)+len(t.RawQuery) > check.MaxQueryLen {
			problems = append(problems, "query over its cap")
		}
		if problems != nil {
			mu.Lock()
			bad = append(bad, strings.Join(problems, "; "))
			mu.Unlock()
		}
		return check.Result{Code: 200, Message: "ok", Outcome: check.OutcomeOK}, nil
	})
	registry := check.NewRegistry(check.Options{})
	for name := range registry {
		if name != "spool" {
			registry[name] = stub
		}
	}
	srv.pipeline.Configure(check.Settings{CacheTTL: 0, CheckTimeout: time.Second, Checkers: registry})

	f.Fuzz(func(t *testing.T, target, state string) {
		raw := "GET " + target + " HTTP/1.1\r\nHost: hacheck\r\nX-Haproxy-Server-State: " + state + "\r\n\r\n"
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			return // net/http refuses it before any handler
		}
		req.RemoteAddr = "127.0.0.1:40000"
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if rec.Code < 100 || rec.Code > 599 || rec.Code == http.StatusInternalServerError {
			t.Fatalf("GET %q with state %q: %d %q", target, state, rec.Code, rec.Body)
		}
		mu.Lock()
		defer mu.Unlock()
		if bad != nil {
			t.Fatalf("GET %q with state %q ran a check of %s", target, state, bad)
		}
	})
}

// FuzzSpoolChange posts arbitrary service names, ports and form bodies to the remote spool API:
// the answer is never a 5xx, and nothing appears beside the spool root.
func FuzzSpoolChange(f *testing.F) {
	for _, seed := range [][3]string{
		{"web", "0", "status=down&reason=maintenance&expiration=1700000000"},
		{"web", "8080", "status=up"},
		{"web", "0", "status=drain&creation=5"},
		{"../etc", "0", "status=down"},
		{"web/../../x", "0", "status=down"},
		{".hidden", "0", "status=down"},
		{"all", "80", "status=down"},
		{"web", "-1", "status=down"},
		{"web", "0", "status=down&reason=%00%ff&expiration=-1"},
		{"web", "0", "status=down&expiration=1e400&creation=NaN"},
		{"web", "0", "guard=1&status=down"},
		{"web", "0", "status=down&reason=" + strings.Repeat("r", 2<<10)},
		{"web", "0", "%zz"},
	} {
		f.Add(seed[0], seed[1], seed[2])
	}
	parent := memoryDir(f)
	root := filepath.Join(parent, "spool")
	if err := os.Mkdir(root, 0o755); err != nil {
		f.Fatal(err)
	}
	cfg := config.Default()
	cfg.AllowRemoteSpoolChanges = true
	srv := New(cfg, Options{Store: spool.New(root), Version: "test", Logger: zerolog.Nop()})

	f.Fuzz(func(t *testing.T, service, port, form string) {
		if values, _ := url.ParseQuery(form); values.Get("wait") != "" {
			return // waits for load balancers to report: a time, not a parser
		}
		target := "/spool/" + url.PathEscape(service) + "/" + url.PathEscape(port) + "/status"
		req := httptest.NewRequest(http.MethodPost, target, strings.NewReader(form))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.RemoteAddr = "127.0.0.1:40000"
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("POST %s %q: %d %q", target, form, rec.Code, rec.Body)
		}
		entries, err := os.ReadDir(parent)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 || entries[0].Name() != "spool" {
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			t.Fatalf("POST %s %q left %v beside the spool root", target, form, names)
		}
	})
}

// memoryDir is a temporary directory in memory (/dev/shm) where there is one: every spool
// write fsyncs, and on a busy disk that, not the code under test, sets a fuzzer's pace.
func memoryDir(f *testing.F) string {
	f.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "hacheck-fuzz-")
	if err != nil {
		return f.TempDir()
	}
	f.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
