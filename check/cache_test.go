package check

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time { return c.now }

// fillCache makes c full of live keys, as a client inventing keys within cache_time does.
func fillCache(t *testing.T, c *Cache, now time.Time, ttl time.Duration) {
	t.Helper()
	ok := func() Result { return Result{Code: 200, Outcome: OutcomeOK} }
	for i := range MaxCacheEntries {
		c.Get([]byte("filler"+strconv.Itoa(i)), now, ttl, false, ok)
	}
	if n := c.Stats().Entries; n != MaxCacheEntries {
		t.Fatalf("cache holds %d entries after filling, want %d", n, MaxCacheEntries)
	}
}

// With the cache full of live keys, a hundred concurrent requests for a new service share one
// upstream check, and five hundred sequential ones after them make one more (the second
// request of a key is the one that caches it) rather than one each.
func TestFullCacheStillCoalescesAndCaches(t *testing.T) {
	var checks atomic.Int64
	release := make(chan struct{})
	p, _ := newTestPipeline(t, time.Hour)
	s := *p.settings.Load()
	s.Checkers = Registry{"slow": CheckerFunc(func(ctx context.Context, t Target) (Result, error) {
		if t.Service == "new" {
			checks.Add(1)
			<-release
		}
		return Result{Code: 200, Message: "fine", Outcome: OutcomeOK}, nil
	})}
	p.Configure(s)
	for i := range MaxCacheEntries {
		p.Answer(Request{Protocol: "slow", Service: "filler" + strconv.Itoa(i), Port: "1", Header: http.Header{}})
	}
	if n := p.Cache().Stats().Entries; n != MaxCacheEntries {
		t.Fatalf("cache holds %d entries after filling, want %d", n, MaxCacheEntries)
	}

	before := p.Cache().Stats().Gets
	req := Request{Protocol: "slow", Service: "new", Port: "1", Header: http.Header{}}
	var wg sync.WaitGroup
	answers := make(chan Answer, 100)
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers <- p.Answer(req)
		}()
	}
	// Release the check once every request is either running one or waiting for one.
	for p.Cache().Stats().Gets-before < 100 {
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	close(answers)
	for a := range answers {
		if a.Code != 200 || a.Body != "fine" {
			t.Fatalf("got %+v", a)
		}
	}
	if n := checks.Load(); n != 1 {
		t.Fatalf("full cache: 100 concurrent requests for a new key made %d upstream checks, want 1", n)
	}

	for range 500 {
		if a := p.Answer(req); a.Code != 200 {
			t.Fatalf("got %+v", a)
		}
	}
	if n := checks.Load(); n > 2 {
		t.Fatalf("full cache: 100 concurrent then 500 sequential requests within cache_time made %d upstream checks, want at most 2", n)
	}
	if a := p.Answer(req); a.Cache != CacheHit {
		t.Fatalf("the new key, asked for again and again, is not cached: %s", a.Cache)
	}
}

// A key a load balancer checks every second keeps its place in the cache through a flood of
// 50,000 invented keys in ten seconds (more than the cache holds within cache_time), whether
// each is asked for once or twice: it is answered from the cache between its refreshes, during
// the flood and after it, and the flood costs at most one upstream check per request.
func TestFloodKeepsTheChecksThatRecur(t *testing.T) {
	const (
		ttl          = 5 * time.Second
		floodSeconds = 10
		perSec       = 50_000 / floodSeconds
		seconds      = floodSeconds + 10
	)
	for _, repeats := range []int{1, 2} {
		t.Run("each flood key asked for "+strconv.Itoa(repeats)+"x", func(t *testing.T) {
			clock := &fakeClock{now: time.Now()}
			c := newCache(clock.Now)
			var serviceChecks, floodChecks int
			service := func() Result { serviceChecks++; return Result{Code: 200, Outcome: OutcomeOK} }
			flood := func() Result { floodChecks++; return Result{Code: 404, Outcome: OutcomeUpstreamFail} }

			c.Get([]byte("web"), clock.now, ttl, false, service)
			for sec := 1; sec <= seconds; sec++ {
				clock.now = clock.now.Add(time.Second)
				for i := range perSec * min(1, max(0, floodSeconds+1-sec)) {
					key := []byte("invented" + strconv.Itoa(sec*perSec+i))
					for range repeats {
						c.Get(key, clock.now, ttl, false, flood)
					}
				}
				_, kind, _, _ := c.Get([]byte("web"), clock.now, ttl, false, service)
				if refresh := sec%int(ttl/time.Second) == 0; !refresh && kind != CacheHit {
					t.Fatalf("second %d (%d entries): the recurring key was a %s, want a hit", sec, c.Stats().Entries, kind)
				}
			}
			if want := 1 + seconds/int(ttl/time.Second); serviceChecks != want {
				t.Errorf("the recurring key was checked %d times in %d s with cache_time %s, want %d", serviceChecks, seconds, ttl, want)
			}
			if requests := floodSeconds * perSec * repeats; floodChecks > requests {
				t.Errorf("%d requests for invented keys made %d upstream checks", requests, floodChecks)
			}
			if n := c.Stats().Entries; n > MaxCacheEntries {
				t.Errorf("cache holds %d entries, cap %d", n, MaxCacheEntries)
			}
		})
	}
}

// Clients can invent keys: past MaxCacheEntries a new key is checked without being cached on
// its first request, and cached on its next, in place of another; the cache never grows past
// its cap.
func TestCacheIsBounded(t *testing.T) {
	c := NewCache()
	now := time.Now()
	fillCache(t, c, now, time.Hour)
	fill := func() Result { return Result{Code: 200, Outcome: OutcomeOK} }
	for i, want := range []CacheResult{CacheMiss, CacheMiss, CacheHit} {
		if _, kind, _, _ := c.Get([]byte("one more"), now, time.Hour, false, fill); kind != want {
			t.Fatalf("request %d of a new key to a full cache: %s, want %s", i+1, kind, want)
		}
	}
	if n := c.Stats().Entries; n != MaxCacheEntries {
		t.Fatalf("cache holds %d entries, cap %d", n, MaxCacheEntries)
	}
}

// What a flood of keys can make the cache hold is bounded in bytes, not only in keys: with
// every upstream answering the most of a body a check keeps (4 KiB), 30,000 keys asked for
// twice each leave the cache's live heap within its byte budget and a margin.
func TestCacheMemoryBounded(t *testing.T) {
	c := NewCache()
	now := time.Now()
	body := strings.Repeat("x", DefaultBodyLimit)
	fill := func() Result {
		// A copy per check, as the http checker makes one per response.
		return Result{Code: 200, Message: string([]byte(body)), Outcome: OutcomeOK}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range 30_000 {
		key := []byte(fmt.Sprintf("http\x00%0128d\x008080\x00health\x00", i))
		c.Get(key, now, time.Hour, false, fill)
		c.Get(key, now, time.Hour, false, fill)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	held := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	// The byte budget (8 MiB) and a margin for the maps and what the runtime keeps.
	if limit := int64(16 << 20); held > limit {
		t.Errorf("the cache holds %.1f MiB of heap after a flood of 4 KiB results, want at most %.1f MiB", float64(held)/(1<<20), float64(limit)/(1<<20))
	}
	t.Logf("heap held by the cache: %.1f MiB", float64(held)/(1<<20))
	runtime.KeepAlive(c)
}
