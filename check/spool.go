package check

import "context"

// spoolChecker is the "spool" protocol: it checks nothing and always answers 200 with an empty
// body. The spool gate that can answer 503 runs before any checker, in the pipeline.
type spoolChecker struct{}

func (spoolChecker) Check(context.Context, Target) (Result, error) {
	return Result{Code: 200, Message: "", Outcome: OutcomeOK}, nil
}

// Uncached: its answer costs nothing, so it needs neither the cache nor a deadline.
func (spoolChecker) Uncached() {}

// Portless: it connects to nothing, so port 0 (the service as a whole) is a valid port.
func (spoolChecker) Portless() {}

// DrainsWith404: HAProxy asks /spool/ with an HTTP check, so a drain mark is its NOLB.
func (spoolChecker) DrainsWith404() {}
