package server

import (
	"strconv"
	"testing"
)

func TestParseListenEnv(t *testing.T) {
	const self = 4242
	tests := []struct {
		name, pid, fds string
		want           int
		wantErr        bool
	}{
		{"not socket activated", "", "", 0, false},
		{"one socket for us", "4242", "1", 1, false},
		{"two sockets for us", "4242", "2", 2, false},
		{"zero sockets", "4242", "0", 0, false},
		{"meant for another process", "1", "1", 0, false},
		{"no LISTEN_PID", "", "1", 0, false},
		{"garbage LISTEN_PID", "x", "1", 0, false},
		{"garbage LISTEN_FDS", "4242", "one", 0, true},
		{"negative LISTEN_FDS", "4242", "-1", 0, true},
		{"absurd LISTEN_FDS", "4242", "100000", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseListenEnv(tt.pid, tt.fds, self)
			if got != tt.want || (err != nil) != tt.wantErr {
				t.Errorf("parseListenEnv(%q, %q) = %d, %v; want %d, error %v", tt.pid, tt.fds, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func FuzzParseListenEnv(f *testing.F) {
	f.Add("4242", "1")
	f.Add("", "")
	f.Add("4242", "99999999999999999999")
	f.Fuzz(func(t *testing.T, pid, fds string) {
		n, err := parseListenEnv(pid, fds, 4242)
		if err != nil && n != 0 || n < 0 || n > maxListenFDs {
			t.Fatalf("parseListenEnv(%q, %q) = %d, %v", pid, fds, n, err)
		}
		if p, _ := strconv.Atoi(pid); n > 0 && p != 4242 {
			t.Fatalf("took %d sockets meant for process %q", n, pid)
		}
	})
}
