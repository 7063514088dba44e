package metrics

import (
	"strconv"
	"sync"
	"testing"
)

// Every key stored is found again, from any goroutine, however publishing interleaves.
func TestReadMostlyConcurrent(t *testing.T) {
	var r readMostly[string, int]
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				key := strconv.Itoa(i)
				v, ok := r.loadOrStore(key, func() (int, bool) { return i, true })
				if !ok || v != i {
					t.Errorf("goroutine %d: loadOrStore(%s) = %d, %v", g, key, v, ok)
					return
				}
				if v, ok := r.load(key); !ok || v != i {
					t.Errorf("goroutine %d: load(%s) = %d, %v", g, key, v, ok)
					return
				}
			}
		}()
	}
	wg.Wait()
	n := 0
	r.rangeAll(func(string, int) { n++ })
	if n != 2000 {
		t.Fatalf("%d keys, want 2000", n)
	}
}

// A full limiter answers refusals from the published map alone, and still finds every key it
// admitted, also those admitted just before it filled up.
func TestLimiterFullIsPublished(t *testing.T) {
	l := newLimiter[string, string]()
	l.setMax(3)
	for _, k := range []string{"a", "b", "c"} {
		if _, ok := l.get(k, sameLabel); !ok {
			t.Fatalf("%s refused below the cap", k)
		}
	}
	if _, ok := l.get("d", sameLabel); ok {
		t.Fatal("d admitted past the cap")
	}
	if l.set.dirty.Load() {
		t.Fatal("a refusal must publish every admitted key")
	}
	for _, k := range []string{"a", "b", "c"} {
		if _, ok := l.set.loadPublished(k); !ok {
			t.Fatalf("%s admitted but not published once full", k)
		}
	}
	l.setMax(4) // a reload raising the cap admits again
	if _, ok := l.get("d", sameLabel); !ok {
		t.Fatal("d refused after the cap was raised")
	}
}
