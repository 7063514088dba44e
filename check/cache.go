package check

import (
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Cache holds check results for their TTL and coalesces concurrent misses: however many
// requests ask for one cold key at once, one upstream check runs and they all share its result.
// Failures are cached like successes, so a down service is not hammered either. Expiry uses the
// monotonic clock (time.Now's reading), so wall-clock jumps neither extend nor cut a TTL.
//
// Every check request reads the cache, from every CPU at once, so hits take no lock: they look
// the key up in an immutable map published through an atomic pointer. A key's entry is created once
// and its state swapped in place on every refresh, so the published map only needs to change
// when keys are added or swept; a new key becomes visible there after a number of slower
// lookups proportional to the cache's size, which keeps republishing amortised O(1) (the
// scheme of sync.Map, with string keys that need no allocation to look up).
type Cache struct {
	read atomic.Pointer[map[string]*cacheEntry] // published, never modified

	mu          sync.Mutex
	entries     map[string]*cacheEntry // authoritative; guarded by mu
	unpublished int                    // lookups that needed entries, since the last publish
	lastSweep   time.Time
	// lastForcedSweep rate-limits the full sweep a full cache triggers: under a flood of
	// invented keys it would otherwise run, O(entries), on every request.
	lastForcedSweep time.Time

	// Every Get ends in exactly one of hits, misses, coalesced or bypasses, so gets is their sum
	// rather than one more atomic that every request on every core would write.
	hits, misses, coalesced, bypasses, sets, expirations atomic.Uint64
}

type cacheEntry struct {
	state atomic.Pointer[entryState] // nil until the first check of the key starts
	memo  Memo
}

// Memo is where the cache's caller keeps what it derives from a key and would otherwise look
// up again on every request the key's entry answers: the metrics keep the service's series
// here, which saves a map lookup (and its cache misses) per request. It lives as long as the
// entry; a key swept and cached again starts with an empty memo.
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
func NewCache() *Cache {
	c := &Cache{entries: make(map[string]*cacheEntry), lastSweep: time.Now()}
	c.publishLocked()
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
	if e := (*c.read.Load())[string(key)]; e != nil {
		if st := e.state.Load(); st != nil {
			if v := decide(st, now, bypass); v != mustCheck {
				result, kind = c.serve(st, v)
				return result, kind, false, &e.memo
			}
		}
	}

	c.mu.Lock()
	e := c.entries[string(key)]
	if e == nil {
		c.sweepLocked(now, ttl)
		if len(c.entries) >= MaxCacheEntries && now.Sub(c.lastForcedSweep) >= time.Second {
			c.lastForcedSweep = now
			c.sweepExpiredLocked(now, 0)
		}
		if len(c.entries) >= MaxCacheEntries {
			// Full of live keys: clients are inventing them. Check without caching rather
			// than grow; the keys already cached (the real services) keep being served.
			c.mu.Unlock()
			c.misses.Add(1)
			return fill(), CacheMiss, false, nil
		}
		e = &cacheEntry{}
		c.entries[string(key)] = e
	}
	if c.unpublished++; c.unpublished > len(c.entries)/4 {
		c.publishLocked()
	}
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

	kind = CacheMiss
	if bypass {
		kind = CacheBypass
		c.bypasses.Add(1)
	} else {
		c.misses.Add(1)
	}
	finished := false
	defer func() {
		if finished {
			return
		}
		// fill panicked or its goroutine exited: the waiters must not hang. The pipeline's
		// fill recovers on its own; this is the cache keeping its promise to any caller.
		r := recover()
		st.result = Result{Code: http.StatusServiceUnavailable, Message: "check failed: internal error", Outcome: OutcomeError}
		st.expires = time.Now()
		st.finish()
		if r != nil {
			panic(r)
		}
	}()
	st.result = fill()
	st.expires = time.Now().Add(ttl)
	st.finish()
	finished = true
	c.sets.Add(1)
	if previous != nil {
		changed = previous.result.Healthy() != st.result.Healthy()
	} else {
		changed = !st.result.Healthy()
	}
	return st.result, kind, changed, &e.memo
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

// publishLocked makes the lock-free map a copy of entries. Callers hold mu.
func (c *Cache) publishLocked() {
	m := make(map[string]*cacheEntry, len(c.entries))
	for k, e := range c.entries {
		m[k] = e
	}
	c.read.Store(&m)
	c.unpublished = 0
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
			c.expirations.Add(1)
			swept = true
		}
	}
	if swept {
		c.publishLocked() // so the swept entries can be freed
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
	Entries     int    `json:"entries"`
}

// Stats returns the counters.
func (c *Cache) Stats() CacheStats {
	c.mu.Lock()
	n := len(c.entries)
	c.mu.Unlock()
	stats := CacheStats{
		Hits: c.hits.Load(), Misses: c.misses.Load(), Coalesced: c.coalesced.Load(),
		Bypasses: c.bypasses.Load(), Sets: c.sets.Load(), Expirations: c.expirations.Load(), Entries: n,
	}
	stats.Gets = stats.Hits + stats.Misses + stats.Coalesced + stats.Bypasses
	return stats
}
