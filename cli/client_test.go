package cli

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// What answers on the server's port may be anything: the client says plainly what it got, and
// never reads more than an answer of hacheck's can be.
func TestServerClientAnswers(t *testing.T) {
	for _, tc := range []struct {
		name        string
		handler     http.HandlerFunc
		unreachable bool
		want        string
	}{
		{"not hacheck", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }, true, "not a hacheck that knows it"},
		{"an error of hacheck's", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "invalid service name", 400) }, false, "400 Bad Request: invalid service name"},
		{"not JSON", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>")) }, false, "decode"},
		{"endless", func(w http.ResponseWriter, r *http.Request) {
			chunk := []byte(strings.Repeat(" ", 1<<16))
			for range (maxLBAnswer >> 16) + 2 {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
		}, false, "the answer is over 8388608 bytes"},
		{"too slow", func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }, true, "deadline exceeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			port, _ := strconv.Atoi(srv.URL[strings.LastIndexByte(srv.URL, ':')+1:])
			c := newServerClient(port)
			if tc.name == "too slow" {
				c.timeout = 300 * time.Millisecond
			} else {
				c.timeout = 30 * time.Second // the machine may be slow; the size limit must end it
			}
			_, err := c.lb(context.Background(), "web", 0)
			var unreachable *unreachableError
			if err == nil || !strings.Contains(err.Error(), tc.want) || errors.As(err, &unreachable) != tc.unreachable || strings.Contains(err.Error(), "\n") {
				t.Fatalf("= %v; want one line with %q, unreachable %v", err, tc.want, tc.unreachable)
			}
		})
	}
}
