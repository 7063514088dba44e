package lb

import (
	"strings"
	"testing"
	"time"
)

func TestReply(t *testing.T) {
	tests := []struct {
		v    Verdict
		want string
	}{
		{Verdict{Weight: -1}, "ready 100%"},
		{Verdict{Weight: 30}, "ready 30%"},
		{Verdict{Weight: 0}, "ready 0%"},
		{Verdict{Weight: 256}, "ready 256%"},
		{Verdict{Weight: 999}, "ready 100%"},
		{Verdict{Down: true, Reason: "kernel upgrade", Weight: -1}, "maint # kernel upgrade"},
		{Verdict{Down: true, Weight: 30}, "maint"},
		{Verdict{Down: true, Reason: "line\nbreak\r\tand\x00more  ", Weight: -1}, "maint # line break  and more"},
		{Verdict{Down: true, Reason: strings.Repeat("é", 150), Weight: -1}, "maint # " + strings.Repeat("é", 100)},
		{Verdict{Down: true, Drain: true, Reason: "deploy", Weight: 30}, "drain"},
	}
	for _, tt := range tests {
		if got := Reply(tt.v); got != tt.want {
			t.Errorf("Reply(%+v) = %q, want %q", tt.v, got, tt.want)
		}
	}
}

func TestParseRequest(t *testing.T) {
	tests := []struct {
		line    string
		service string
		port    int
		ok      bool
	}{
		{"web", "web", 0, true},
		{"web:8080", "web", 8080, true},
		{" web:8080\r", "web", 8080, true},
		{"all", "all", 0, true},
		{"all:80", "", 0, false},
		// Port 0 is the whole service, as in -P 0 and a check URL's port 0 (synapse's lines):
		// an agent-send written after that URL asks for the service, not for nothing.
		{"web:0", "web", 0, true},
		{"web:00", "web", 0, true},
		{"all:0", "all", 0, true},
		{"web:-1", "", 0, false},
		{"web:65536", "", 0, false},
		{"web:+80", "", 0, false},
		{"web:", "", 0, false},
		{"../etc/passwd", "", 0, false},
		{".hidden", "", 0, false},
		{"", "", 0, false},
		{"web 8080", "", 0, false},
		{strings.Repeat("a", 129), "", 0, false},
	}
	for _, tt := range tests {
		service, port, ok := ParseRequest(tt.line)
		if service != tt.service || port != tt.port || ok != tt.ok {
			t.Errorf("ParseRequest(%q) = %q, %d, %v; want %q, %d, %v", tt.line, service, port, ok, tt.service, tt.port, tt.ok)
		}
	}
}

func FuzzParseRequest(f *testing.F) {
	for _, seed := range []string{"web", "web:8080", "all", "a:99999", ":", "..:1", "web:08080\r"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, line string) {
		service, port, ok := ParseRequest(line)
		if !ok {
			return
		}
		if len(service) == 0 || len(service) > 128 || strings.ContainsAny(service, "/:\x00 ") || port < 0 || port > 65535 {
			t.Fatalf("ParseRequest(%q) accepted %q, %d", line, service, port)
		}
	})
}

func TestAnswer(t *testing.T) {
	lookup := func(service string, port int, _ time.Time) Verdict {
		if service == "web" && port == 8080 {
			return Verdict{Down: true, Reason: "deploy", Weight: -1}
		}
		if service == "api" && port == 0 {
			return Verdict{Down: true, Reason: "whole", Weight: -1}
		}
		return Verdict{Weight: -1}
	}
	for _, tt := range []struct {
		line, service string
		port          int
		reply         string
		ok            bool
	}{
		{"web:8080", "web", 8080, "maint # deploy", true},
		{"web", "web", 0, "ready 100%", true},
		{"api:0", "api", 0, "maint # whole", true},
		{"", "all", 0, "ready 100%", false},
		{"GET / HTTP/1.0", "all", 0, "ready 100%", false},
	} {
		service, port, reply, ok := Answer(tt.line, lookup, time.Now())
		if service != tt.service || port != tt.port || reply != tt.reply || ok != tt.ok {
			t.Errorf("Answer(%q) = %q, %d, %q, %v; want %q, %d, %q, %v", tt.line, service, port, reply, ok, tt.service, tt.port, tt.reply, tt.ok)
		}
	}
}
