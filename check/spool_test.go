package check

import (
	"testing"
	"time"
)

func TestSpoolAlwaysOK(t *testing.T) {
	got, err := NewRegistry(Options{})["spool"].Check(checkCtx(t, time.Second), Target{Service: "svc", Port: 0})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if want := (Result{Code: 200, Message: "", Outcome: OutcomeOK}); got != want {
		t.Errorf("Check = %+v, want %+v", got, want)
	}
}
