package check

import (
	"hash/maphash"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hacheck/hacheck/internal/published"
)

// Cache holds check results for their TTL and coalesces concurrent misses: however many
// requests ask for one cold key at once, one upstream check runs and they all share its result.
// Failures are cached like successes, so a down service is not hammered either. Expiry uses the
// monotonic clock (time.Now's reading), so wall-clock jumps neither extend nor cut a TTL.
//
// Every check request reads the cache, from every CPU at once, so hits take no lock: they look
// the key up in the published copy of the entries (package published). A key's entry is created
// once and its state swapped in place on every refresh, so the published map only needs to
// change when keys are added or swept; a new key becomes visible there after a number of slower
// lookups proportional to the cache's size. Keys are strings looked up with m[string(b)], which
// allocates nothing.
//
// Clients choose keys (service names, queries), so the cache holds at most MaxCacheEntries
// keys and MaxCacheBytes of keys and results. Once full, it keeps the keys asked for again and again (the load balancers' checks) over
// keys asked for once (a flood of invented ones): a new key is cached only on its second
// request, and then in place of an entry asked for least of late (the generalised CLOCK rule:
// each request raises an entry's small use count, each pass of eviction's hand lowers it, and
// the hand takes the first entry it finds at zero). A key that is not cached still has its
// concurrent requests share one upstream check.
type Cache struct {
	read published.Map[string, *cacheEntry] // entries, for lookups without mu

	mu        sync.Mutex
	entries   map[string]*cacheEntry // authoritative; guarded by mu
	ring      []*cacheEntry          // the same entries, in the order eviction visits them
	hand      int                    // the next ring slot eviction looks at
	lastSweep time.Time
	// inflight are the running checks of keys the full cache did not take, for their
	// concurrent requests to join: it holds only checks in progress, so it is bounded by the
	// requests being served.
	inflight map[string]*entryState
	// seenOnce remembers keys asked for once while the cache was full: a fingerprint per slot,
	// the slot chosen by a hash of the key. A later key hashing to the same slot overwrites
	// it, so the memory stays fixed however many keys a flood invents; at worst a real new key
	// needs another pair of requests to be cached.
	seenOnce *[seenOnceSlots]uint32
	seed     maphash.Seed
	clock    func() time.Time // time.Now; tests fake it
	// bytes is what the cached entries weigh (entrySize): changed by a check as it finishes,
	// before the entry can be evicted, and by eviction and sweeps under mu.
	bytes atomic.Int64

	// Every Get ends in exactly one of hits, misses, coalesced or bypasses, so gets is their sum
	// rather than one more atomic that every request on every core would write.
	hits, misses, coalesced, bypasses, sets, expirations, evictions atomic.Uint64
}

type cacheEntry struct {
	state atomic.Pointer[entryState] // nil until the first check of the key starts, and once evicted
	// uses is raised by every request of the key, up to maxUses, and lowered by eviction's
	// hand passing over it: a key asked for again and again outlasts maxUses passes of a hand
	// that a flood of new keys drives round. Once a key is at maxUses, its hits only read it,
	// from the line they read state from. Lost updates between cores are harmless.
	uses atomic.Uint32
	memo Memo
	key  string       // guarded by mu
	slot int          // index in ring; guarded by mu
	size atomic.Int64 // entrySize of its last result, counted in Cache.bytes
}

// Memo is where the cache's caller keeps what it derives from a key and would otherwise look
// up again on every request the key's entry answers: the metrics keep the service's series
// here, which saves a map lookup (and its cache misses) per request: +1.4% req/s on the load
// harness's 1,000 services × 50 sources with a new connection per request (HAProxy's way), 6 of
// 7 alternating rounds, against a lookup per request. It lives as long as the entry; a key
// swept and cached again starts with an empty memo.
type Memo struct{ v atomic.Value }

// Load returns what was stored, or nil.
func (m *Memo) Load() any { return m.v.Load() }

// Store keeps v; every Store on one memo must pass the same concrete type.
func (m *Memo) Store(v any) { m.v.Store(v) }

type entryState struct {
	// finished is set once result and expires are, just before done is closed. Hits read it
	// rather than polling done: the flag shares a cache line with the result, the channel is
	// one more line to fetch on every request.
	finished atomic.Bool
	expires  time.Time
	result   Result
	done     chan struct{} // closed once finished is set, for the requests that wait
	// fresh is the result a Pragma: no-cache refresh replaces, while it is still within its
	// TTL: ordinary requests keep being answered from it instead of waiting for the refresh.
	// Set before the state is published and never changed; a copy, so states never chain.
	fresh *freshResult
}

type freshResult struct {
	result  Result
	expires time.Time
}

// NewCache returns an empty cache.
func NewCache() *Cache { return newCache(time.Now) }

func newCache(clock func() time.Time) *Cache {
	c := &Cache{
		entries:   make(map[string]*cacheEntry),
		lastSweep: clock(),
		inflight:  make(map[string]*entryState),
		seenOnce:  new([seenOnceSlots]uint32),
		seed:      maphash.MakeSeed(),
		clock:     clock,
	}
	c.read.Publish(c.entries)
	return c
}

// Get returns the cached result for key if it is younger than ttl; otherwise it runs fill (once
// for all concurrent callers of the same key) and caches its result for ttl. bypass (Pragma:
// no-cache) skips a cached result but still joins a check already running, which is at least
// as fresh as the request, and refreshes the cache with its own result.
//
// now is the caller's reading of time.Now (its monotonic part decides freshness). changed is
// true for the one caller whose check turned the key from healthy to not or back (or found it
// unhealthy the first time): transitions are logged once, by that caller. memo is the key's
// entry's memo (nil when the cache is full and did not keep the key).
func (c *Cache) Get(key []byte, now time.Time, ttl time.Duration, bypass bool, fill func() Result) (result Result, kind CacheResult, changed bool, memo *Memo) {
	if e := c.read.Load()[string(key)]; e != nil {
		if st := e.state.Load(); st != nil {
			if v := decide(st, now, bypass); v != mustCheck {
				if n := e.uses.Load(); n < maxUses {
					e.uses.Store(n + 1)
				}
				result, kind = c.serve(st, v)
				return result, kind, false, &e.memo
			}
		}
	}

	c.mu.Lock()
	e := c.entries[string(key)]
	if e == nil {
		if st := c.inflight[string(key)]; st != nil {
			c.mu.Unlock()
			result, kind = c.serve(st, join)
			return result, kind, false, nil
		}
		c.sweepLocked(now, ttl)
		slot := -1
		if c.fullLocked() {
			if slot = c.admitLocked(key); slot < 0 {
				kind = c.countCheck(bypass)
				return c.checkUncachedLocked(key, ttl, fill), kind, false, nil
			}
		}
		e = &cacheEntry{key: string(key)}
		c.entries[e.key] = e
		c.placeLocked(e, slot)
	}
	if n := e.uses.Load(); n < maxUses {
		e.uses.Store(n + 1)
	}
	c.read.Missed(c.entries)
	previous := e.state.Load()
	st := &entryState{done: make(chan struct{})}
	if previous != nil {
		// Decided again under the lock: another request may have filled or started a check
		// since the lock-free look.
		if v := decide(previous, now, bypass); v != mustCheck {
			c.mu.Unlock()
			result, kind = c.serve(previous, v)
			return result, kind, false, &e.memo
		}
		if now.Before(previous.expires) { // a Pragma: no-cache refresh of a fresh result
			st.fresh = &freshResult{previous.result, previous.expires}
		}
	}
	e.state.Store(st)
	c.mu.Unlock()

	kind = c.countCheck(bypass)
	c.run(st, ttl, fill, e)
	c.sets.Add(1)
	if c.bytes.Load() > MaxCacheBytes {
		// The refreshed result is bigger than the one it replaced: make room now rather
		// than wait for the next new key.
		c.mu.Lock()
		c.shrinkLocked(-1)
		c.mu.Unlock()
	}
	if previous != nil {
		changed = previous.result.Healthy() != st.result.Healthy()
	} else {
		changed = !st.result.Healthy()
	}
	return st.result, kind, changed, &e.memo
}

// countCheck counts a request that runs an upstream check, and says which kind it is.
func (c *Cache) countCheck(bypass bool) CacheResult {
	if bypass {
		c.bypasses.Add(1)
		return CacheBypass
	}
	c.misses.Add(1)
	return CacheMiss
}

// run fills st and releases its waiters, even when fill panics or its goroutine exits: the
// pipeline's fill recovers on its own; this is the cache keeping its promise to any caller.
// e is the entry st belongs to (nil for a key not cached), whose weight it updates before the
// result is published: a finished entry may be evicted at once, which subtracts its size.
func (c *Cache) run(st *entryState, ttl time.Duration, fill func() Result, e *cacheEntry) {
	finished := false
	defer func() {
		if finished {
			return
		}
		r := recover()
		st.result = Result{Code: http.StatusServiceUnavailable, Message: "check failed: internal error", Outcome: OutcomeError}
		st.expires = c.clock()
		c.weigh(e, st.result)
		st.finish()
		if r != nil {
			panic(r)
		}
	}()
	st.result = fill()
	st.expires = c.clock().Add(ttl)
	c.weigh(e, st.result)
	st.finish()
	finished = true
}

// checkUncachedLocked runs the check of a key the full cache did not take, with its concurrent
// requests joining it through inflight. Callers hold mu; it is released.
func (c *Cache) checkUncachedLocked(key []byte, ttl time.Duration, fill func() Result) Result {
	st := &entryState{done: make(chan struct{})}
	k := string(key)
	c.inflight[k] = st
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.inflight, k)
		c.mu.Unlock()
	}()
	c.run(st, ttl, fill, nil)
	return st.result
}

// verdict is how a request can be answered from an entry's state.
type verdict int

const (
	mustCheck   verdict = iota // no usable result: run a check
	hit                        // the finished result is within its TTL
	hitReplaced                // a Pragma: no-cache refresh runs; the result it replaces is fresh
	join                       // a check is in flight: wait for it
)

// decide is the one rule for answering from st: a fresh finished result serves everyone but
// a bypass; while a check runs, the fresh result a bypass replaces serves everyone but another
// bypass, and otherwise everyone waits for the check, a bypass too (it is at least as fresh as
// the request).
func decide(st *entryState, now time.Time, bypass bool) verdict {
	if st.finished.Load() {
		if !bypass && now.Before(st.expires) {
			return hit
		}
		return mustCheck
	}
	if f := st.fresh; !bypass && f != nil && now.Before(f.expires) {
		return hitReplaced
	}
	return join
}

// finish publishes result and expires, set by the caller before, to every reader.
func (st *entryState) finish() {
	st.finished.Store(true)
	close(st.done)
}

// serve answers from st as decide said, counting it.
func (c *Cache) serve(st *entryState, v verdict) (Result, CacheResult) {
	switch v {
	case hit:
		c.hits.Add(1)
		return st.result, CacheHit
	case hitReplaced:
		c.hits.Add(1)
		return st.fresh.result, CacheHit
	default:
		c.coalesced.Add(1)
		<-st.done
		return st.result, CacheCoalesced
	}
}

// MaxCacheEntries bounds the cache: keys are partly chosen by clients (service names, queries),
// so without a bound anyone could grow it. A host's real checks are services × ports × paths,
// rarely more than a few thousand.
const MaxCacheEntries = 20_000

// sweepGrace is how long an expired entry is kept before the periodic sweep drops it: longer
// than any check interval, so a key checked every few seconds keeps its last result and with it
// the health its next check is compared to (transitions are logged on change).
func sweepGrace(ttl time.Duration) time.Duration { return max(10*ttl, 5*time.Minute) }

// sweepLocked drops long-expired entries at most once per ttl (and per second), so keys nobody
// asks for any more (random service names, ports that went away) do not pile up. Callers hold
// mu.
func (c *Cache) sweepLocked(now time.Time, ttl time.Duration) {
	if now.Sub(c.lastSweep) < max(ttl, time.Second) {
		return
	}
	c.lastSweep = now
	c.sweepExpiredLocked(now, sweepGrace(ttl))
}

// sweepExpiredLocked drops entries expired for longer than grace. Callers hold mu.
func (c *Cache) sweepExpiredLocked(now time.Time, grace time.Duration) {
	swept := false
	for key, e := range c.entries {
		st := e.state.Load()
		if st == nil {
			continue
		}
		if st.finished.Load() && now.Sub(st.expires) >= grace {
			delete(c.entries, key)
			c.bytes.Add(-e.size.Load())
			c.removeLocked(e)
			c.expirations.Add(1)
			swept = true
		}
	}
	if swept {
		c.read.Publish(c.entries) // so the swept entries can be freed
	}
}

// CacheStats are the cache's counters since start, as /status reports them.
type CacheStats struct {
	Gets        uint64 `json:"gets"`
	Hits        uint64 `json:"hits"`
	Misses      uint64 `json:"misses"`
	Coalesced   uint64 `json:"coalesced"`
	Bypasses    uint64 `json:"bypasses"`
	Sets        uint64 `json:"sets"`
	Expirations uint64 `json:"expirations"`
	Evictions   uint64 `json:"evictions"` // entries a full cache gave up for keys asked for again
	Entries     int    `json:"entries"`
}

// Stats returns the counters.
func (c *Cache) Stats() CacheStats {
	c.mu.Lock()
	n := len(c.entries)
	c.mu.Unlock()
	stats := CacheStats{
		Hits: c.hits.Load(), Misses: c.misses.Load(), Coalesced: c.coalesced.Load(),
		Bypasses: c.bypasses.Load(), Sets: c.sets.Load(), Expirations: c.expirations.Load(), Evictions: c.evictions.Load(), Entries: n,
	}
	stats.Gets = stats.Hits + stats.Misses + stats.Coalesced + stats.Bypasses
	return stats
}
