package metrics

import (
	"sync"
	"testing"
)

// Requests racing to count the same new pairs claim one slot per pair and lose no count.
func TestPairCountsConcurrent(t *testing.T) {
	p := newPairCounts(&serviceSeries{label: LabelOther}, &serviceSeries{label: LabelInvalid})
	const pairs, rounds, goroutines = 500, 40, 4
	var wg sync.WaitGroup
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				for i := range uint32(pairs) {
					p.add(2+i%50, 10+i/50)
				}
			}
		}()
	}
	wg.Wait()
	if got := p.pairs.Load(); got != pairs {
		t.Fatalf("%d pairs claimed, want %d", got, pairs)
	}
	for i := range uint32(pairs) {
		slot := p.find(pairKey(2+i%50, 10+i/50))
		if slot == nil || slot.count.Load() != rounds*goroutines {
			t.Fatalf("pair %d: slot %v", i, slot)
		}
	}
}

// Past the pair cap each service's new sources share its "other" pair, and once even those
// would crowd the table, everything left shares (other, other): the table never fills and
// no request goes uncounted.
func TestPairCountsNeverFill(t *testing.T) {
	p := newPairCounts(&serviceSeries{label: LabelOther}, &serviceSeries{label: LabelInvalid})
	p.pairs.Store(maxSourcePairs) // the cap reached
	adds := int64(0)
	for service := uint32(2); service < maxPairLoad+1000; service++ {
		p.add(service, 7)
		adds++
	}
	if taken := p.taken.Load(); taken > maxPairLoad {
		t.Fatalf("%d slots taken, more than the %d allowed", taken, maxPairLoad)
	}
	total := int64(0)
	for i := range p.slots {
		total += p.slots[i].count.Load()
	}
	if total != adds {
		t.Fatalf("%d requests counted, want %d", total, adds)
	}
	// Every slot up to the load limit went to a service's own "other" pair (one slot is
	// (other, other) itself); the rest share (other, other).
	want := adds - (maxPairLoad - 1)
	if n := p.overflow.count.Load(); n != want {
		t.Fatalf("(other, other) counted %d, want the %d requests past the table's load", n, want)
	}
}
