package spool

import (
	"testing"
	"time"
)

func TestWeightOnlyMarksHoldNothingDown(t *testing.T) {
	w := func(n int) *int { return &n }
	for _, tc := range []struct {
		name       string
		marks      []Mark
		port       int
		wantDown   bool
		wantWeight *int
		wantReason string
	}{
		{"a weight alone is up, and says its weight", []Mark{{Service: "web", Reason: "canary", Weight: w(30)}}, 8080, false, w(30), "canary"},
		{"the instance's weight is the more specific one", []Mark{{Service: "web", Weight: w(30)}, {Service: "web", Port: 8080, Weight: w(50)}}, 8080, false, w(50), ""},
		{"a down mark of the instance wins over a weight", []Mark{{Service: "web", Weight: w(30)}, {Service: "web", Port: 8080, Reason: "disk"}}, 8080, true, nil, "disk"},
		{"all wins over a weight", []Mark{{Service: "all", Reason: "rack"}, {Service: "web", Weight: w(30)}}, 8080, true, nil, "rack"},
		{"a drain mark with a weight is a drain mark", []Mark{{Service: "web", Reason: "drain", Drain: true, Weight: w(30)}}, 8080, true, w(30), "drain"},
		{"a weight of 0 is still only a weight", []Mark{{Service: "web", Weight: w(0)}}, 0, false, w(0), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, watched := range []bool{false, true} {
				s := New(t.TempDir())
				for _, m := range tc.marks {
					if _, err := s.Put(m); err != nil {
						t.Fatal(err)
					}
				}
				if watched {
					if err := s.Watch(); err != nil {
						t.Fatal(err)
					}
					defer s.Close()
				}
				m, down := s.StatusAt("web", tc.port, time.Now())
				gotWeight := m.Weight != nil
				if down != tc.wantDown || gotWeight != (tc.wantWeight != nil) || gotWeight && *m.Weight != *tc.wantWeight || m.Reason != tc.wantReason {
					t.Errorf("watched=%v: StatusAt = %+v, down %v; want down %v, weight %v, reason %q", watched, m, down, tc.wantDown, tc.wantWeight, tc.wantReason)
				}
			}
		})
	}
}
