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
type Cache struct {
	mu      sync.RWMutex
	entries map[string]*cacheEntry

	lastSweep time.Time // guarded by mu

	// Every Get ends in exactly one of hits, misses, coalesced or bypasses, so gets is their sum
	// rather than one more atomic that every request on every core would write.
	hits, misses, coalesced, bypasses, sets, expirations atomic.Uint64
}

type cacheEntry struct {
	done    chan struct{} // closed once result and expires are set
	result  Result
	expires time.Time
}

// NewCache returns an empty cache.
func NewCache() *Cache {
	return &Cache{entries: make(map[string]*cacheEntry), lastSweep: time.Now()}
}

// Get returns the cached result for key if it is younger than ttl; otherwise it runs fill (once
// for all concurrent callers of the same key) and caches its result for ttl. bypass (Pragma:
// no-cache) skips a cached result but still joins a check already running, which is at least
// as fresh as the request, and refreshes the cache with its own result.
//
// now is the caller's reading of time.Now (its monotonic part decides freshness). changed is
// true for the one caller whose check turned the key from healthy to not or back (or found it
// unhealthy the first time): transitions are logged once, by that caller.
func (c *Cache) Get(key []byte, now time.Time, ttl time.Duration, bypass bool, fill func() Result) (result Result, kind CacheResult, changed bool) {
	if !bypass {
		c.mu.RLock()
		e := c.entries[string(key)]
		c.mu.RUnlock()
		if e != nil {
			select {
			case <-e.done:
				if now.Before(e.expires) {
					c.hits.Add(1)
					return e.result, CacheHit, false
				}
			default:
				c.coalesced.Add(1)
				<-e.done
				return e.result, CacheCoalesced, false
			}
		}
	}

	c.mu.Lock()
	previous := c.entries[string(key)]
	if previous != nil {
		select {
		case <-previous.done:
			if !bypass && now.Before(previous.expires) { // filled while we waited for the lock
				c.mu.Unlock()
				c.hits.Add(1)
				return previous.result, CacheHit, false
			}
		default:
			c.mu.Unlock()
			c.coalesced.Add(1)
			<-previous.done
			return previous.result, CacheCoalesced, false
		}
	}
	c.sweepLocked(now, ttl, false)
	if len(c.entries) >= MaxCacheEntries {
		c.sweepLocked(now, ttl, true)
	}
	if len(c.entries) >= MaxCacheEntries {
		// Full of live keys: clients are inventing them. Check without caching rather than
		// grow; the keys already cached (the real services) keep being served from it.
		c.mu.Unlock()
		c.misses.Add(1)
		return fill(), CacheMiss, false
	}
	e := &cacheEntry{done: make(chan struct{})}
	c.entries[string(key)] = e
	c.mu.Unlock()

	kind = CacheMiss
	if bypass {
		kind = CacheBypass
		c.bypasses.Add(1)
	} else {
		c.misses.Add(1)
	}
	defer func() {
		if r := recover(); r != nil {
			// fill must never leave waiters hanging; the pipeline's fill recovers on its own,
			// this is the cache keeping its promise to any other caller.
			e.result = Result{Code: http.StatusServiceUnavailable, Message: "check failed: internal error", Outcome: OutcomeError}
			e.expires = time.Now()
			close(e.done)
			panic(r)
		}
	}()
	e.result = fill()
	e.expires = time.Now().Add(ttl)
	close(e.done)
	c.sets.Add(1)
	if previous != nil {
		changed = previous.result.Healthy() != e.result.Healthy()
	} else {
		changed = !e.result.Healthy()
	}
	return e.result, kind, changed
}

// MaxCacheEntries bounds the cache: keys are partly chosen by clients (service names, queries),
// so without a bound anyone could grow it.
const MaxCacheEntries = 50_000

// sweepLocked drops expired entries at most once per ttl (and per second) unless forced, so keys
// nobody asks for any more (random service names, ports that went away) do not pile up.
// Callers hold mu.
func (c *Cache) sweepLocked(now time.Time, ttl time.Duration, force bool) {
	if !force && now.Sub(c.lastSweep) < max(ttl, time.Second) {
		return
	}
	c.lastSweep = now
	for key, e := range c.entries {
		select {
		case <-e.done:
			if !now.Before(e.expires) {
				delete(c.entries, key)
				c.expirations.Add(1)
			}
		default:
		}
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
	c.mu.RLock()
	n := len(c.entries)
	c.mu.RUnlock()
	stats := CacheStats{
		Hits: c.hits.Load(), Misses: c.misses.Load(), Coalesced: c.coalesced.Load(),
		Bypasses: c.bypasses.Load(), Sets: c.sets.Load(), Expirations: c.expirations.Load(), Entries: n,
	}
	stats.Gets = stats.Hits + stats.Misses + stats.Coalesced + stats.Bypasses
	return stats
}
