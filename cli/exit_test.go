package cli

import (
	"errors"
	"fmt"
	"testing"

	"github.com/hacheck/hacheck/server"
	"github.com/hacheck/hacheck/spool"
)

// The exit code is decided by what kind of error a command returned, however deeply it was
// wrapped on the way up.
func TestExitCodes(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("outer: %w", err) }
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"success", nil, 0},
		{"hastatus saw a service down", errDown, 1},
		{"runtime failure", errors.New("disk on fire"), 1},
		{"--wait ran out of time", &waitTimeoutError{"late"}, 3},
		{"guard refused", wrap(&refusedError{"no"}), 4},
		{"bad input", wrap(usageErrorf("bad")), 2},
		{"spool access", &spool.AccessError{}, 2},
		{"invalid name", wrap(&spool.InvalidError{}), 2},
		{"config error", &server.ConfigError{Err: errors.New("x")}, 2},
		{"server unreachable, not asked for --wait", &unreachableError{3333, errors.New("refused")}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := exitCode(tt.err); got != tt.want {
				t.Errorf("exitCode(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}
