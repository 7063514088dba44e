package published

import (
	"strconv"
	"sync"
	"testing"
)

// A key is published by the time a quarter of the map's size in locked lookups has passed, and
// a published map never changes after readers have it.
func TestPublishedAfterAmortisedLookups(t *testing.T) {
	var p Map[string, int]
	if m := p.Load(); len(m) != 0 {
		t.Fatalf("zero value publishes %v", m)
	}
	all := map[string]int{}
	for i := range 100 {
		all[strconv.Itoa(i)] = i
	}
	p.Publish(all)
	before := p.Load()
	all["new"] = -1
	for i := 0; ; i++ {
		if _, ok := p.Load()["new"]; ok {
			if i > len(all)/4+1 {
				t.Fatalf("published after %d locked lookups, want at most %d", i, len(all)/4+1)
			}
			break
		}
		if i > len(all) {
			t.Fatal("never published")
		}
		p.Missed(all)
	}
	if _, ok := before["new"]; ok || len(before) != 100 {
		t.Fatal("a map already published changed")
	}
	all["later"] = 1
	if _, ok := p.Load()["later"]; ok {
		t.Fatal("the owner's map is shared with readers, not copied")
	}
}

// Readers on every core while the owner adds keys under its lock (run with -race).
func TestConcurrentReaders(t *testing.T) {
	var (
		p   Map[int, int]
		mu  sync.Mutex
		all = map[int]int{}
		wg  sync.WaitGroup
	)
	for range 4 {
		wg.Go(func() {
			for i := range 2000 {
				if v, ok := p.Load()[i%100]; ok && v != i%100 {
					t.Errorf("key %d read as %d", i%100, v)
				}
			}
		})
	}
	for i := range 100 {
		mu.Lock()
		all[i] = i
		p.Missed(all)
		mu.Unlock()
	}
	wg.Wait()
}
