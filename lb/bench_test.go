package lb

import "testing"

const measuredHeader = "UP; address=127.0.0.1; port=18080; name=be_app/app1; node=lb1; weight=1/2; scur=0/0; qcur=0"

func BenchmarkParseState(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseState(measuredHeader); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRecord is what a check request with the send-state header adds, once its line is
// known: the parse and the update under the line's lock.
func BenchmarkRecord(b *testing.B) {
	tr := NewTracker(Options{})
	tr.Record("web", 18080, measuredHeader, 0, lbA, t0)
	b.ReportAllocs()
	for b.Loop() {
		tr.Record("web", 18080, measuredHeader, 0, lbA, t0)
	}
}
