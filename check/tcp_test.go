package check

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestTCP(t *testing.T) {
	_, openPort := listenPort(t)
	expired, cancel := context.WithDeadline(t.Context(), time.Unix(0, 0))
	t.Cleanup(cancel)

	tests := []struct {
		name        string
		ctx         context.Context
		port        int
		wantCode    int
		wantOutcome Outcome
		wantMsg     *regexp.Regexp
	}{
		{"listening", checkCtx(t, 5*time.Second), openPort, 200, OutcomeOK, regexp.MustCompile(`^Connected in \d+\.\d{3}s$`)},
		{"refused", checkCtx(t, 5*time.Second), closedPort(t), 503, OutcomeRefused, regexp.MustCompile(`connection refused after \d+\.\d{3}s$`)},
		{"deadline passed", expired, openPort, 503, OutcomeTimeout, regexp.MustCompile(` after \d+\.\d{3}s$`)},
	}
	checker := NewRegistry(Options{})["tcp"]
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := checker.Check(tt.ctx, Target{Service: "svc", Port: tt.port})
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if got.Code != tt.wantCode || got.Outcome != tt.wantOutcome || !tt.wantMsg.MatchString(got.Message) {
				t.Errorf("Check = %+v, want code %d, outcome %s, message matching %s", got, tt.wantCode, tt.wantOutcome, tt.wantMsg)
			}
			if strings.Contains(got.Message, "\n") {
				t.Errorf("message %q spans lines", got.Message)
			}
		})
	}
}
