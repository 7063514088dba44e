package check

import (
	"strconv"
	"testing"
	"time"
)

// benchCacheHits measures the cached answer, the path nearly every check request takes, over
// keys distinct keys asked for in turn.
func benchCacheHits(b *testing.B, keys int) {
	c := NewCache()
	now := time.Now()
	ok := func() Result { return Result{Code: 200, Outcome: OutcomeOK} }
	names := make([][]byte, keys)
	for i := range names {
		names[i] = []byte("http\x00web" + strconv.Itoa(i) + "\x008080\x00health\x00")
		c.Get(names[i], now, time.Hour, false, ok)
		c.Get(names[i], now, time.Hour, false, ok) // published for lock-free hits
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, kind, _, _ := c.Get(names[i], now, time.Hour, false, ok); kind != CacheHit {
				b.Fatalf("got %s", kind)
			}
			if i++; i == len(names) {
				i = 0
			}
		}
	})
}

func BenchmarkCacheHit(b *testing.B)       { benchCacheHits(b, 1) }
func BenchmarkCacheHitSpread(b *testing.B) { benchCacheHits(b, 1000) }
