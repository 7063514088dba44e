package check

import "hash/maphash"

// How a full cache decides which keys to keep: see Cache.

// MaxCacheBytes bounds what the cached keys and results weigh together: a result keeps up to
// 4 KiB of an upstream's body, so 20,000 of them would hold 80 MiB (and the garbage collector
// lets the heap reach twice what is live), and clients choose the keys. 8 MiB is room for
// 20,000 entries of 400 bytes, or 1,900 of the largest.
const MaxCacheBytes = 8 << 20

// seenOnceSlots is how many keys asked for once a full cache remembers (4 bytes each).
const seenOnceSlots = 1 << 16

// maxUses caps an entry's use count: how many passes of eviction's hand an entry asked for
// often outlasts without being asked for again.
const maxUses = 3

// entryOverhead is what an entry weighs besides its key and message: the entry, its state,
// its slots in the maps and the ring, rounded up.
const entryOverhead = 256

// weigh records that e (if any) now holds r.
func (c *Cache) weigh(e *cacheEntry, r Result) {
	if e == nil {
		return
	}
	size := int64(len(e.key) + len(r.Message) + entryOverhead)
	c.bytes.Add(size - e.size.Swap(size))
}

// fullLocked says whether a new key must earn its place (see admitLocked). By weight that is
// from 7/8 of MaxCacheBytes on, while eviction only brings the cache back to MaxCacheBytes: a
// cache that eviction just made room in still asks a new key for its second request, or every
// key of a flood would get in on its first by turns. Callers hold mu.
func (c *Cache) fullLocked() bool {
	return len(c.entries) >= MaxCacheEntries || c.bytes.Load() >= MaxCacheBytes-MaxCacheBytes/8
}

// maxEvictionsPerRequest bounds the work one request does to bring the cache back under its
// byte budget; the next request does the rest.
const maxEvictionsPerRequest = 16

// shrinkLocked evicts entries while the cache weighs more than MaxCacheBytes, up to
// maxEvictionsPerRequest, and takes them out of the ring. keep is a ring slot the caller is
// about to reuse (-1: none); its entry, already evicted, is never chosen again, but the slot
// may move as others are taken out: shrinkLocked returns where it is now. Callers hold mu.
func (c *Cache) shrinkLocked(keep int) int {
	for range maxEvictionsPerRequest {
		if c.bytes.Load() <= MaxCacheBytes {
			break
		}
		i := c.victimLocked()
		if i < 0 {
			break
		}
		c.removeLocked(c.ring[i])
		if keep == len(c.ring) {
			keep = i // removeLocked moved the last slot, keep's, into i
		}
	}
	return keep
}

// admitLocked decides whether a full cache takes a new key: on the key's second request, in
// the slot of an entry eviction gives up, whose index it returns; otherwise -1 (the first
// request is remembered instead). Callers hold mu.
func (c *Cache) admitLocked(key []byte) int {
	h := maphash.Bytes(c.seed, key)
	i := h & (seenOnceSlots - 1)
	fingerprint := uint32(h>>32) | 1 // never 0, the empty slot
	if c.seenOnce[i] != fingerprint {
		c.seenOnce[i] = fingerprint
		return -1
	}
	slot := c.victimLocked()
	if slot >= 0 {
		c.seenOnce[i] = 0
		slot = c.shrinkLocked(slot)
	}
	return slot
}

// victimLocked evicts the first entry from the hand on whose use count is zero, lowering the
// counts it passes, and returns its ring slot; -1 when every entry is checking (nothing
// finished to give up). Callers hold mu.
func (c *Cache) victimLocked() int {
	n := len(c.ring)
	for range (maxUses + 2) * n {
		i := c.hand
		if c.hand++; c.hand == n {
			c.hand = 0
		}
		e := c.ring[i]
		if st := e.state.Load(); st == nil || !st.finished.Load() {
			continue
		}
		if uses := e.uses.Load(); uses > 0 {
			e.uses.Store(uses - 1)
			continue
		}
		delete(c.entries, e.key)
		c.bytes.Add(-e.size.Load())
		// Readers of the published map, which still has the entry until the next publish,
		// find no state and take the locked path, where the key is no longer cached.
		e.state.Store(nil)
		c.evictions.Add(1)
		return i
	}
	return -1
}

// placeLocked puts a new entry in the ring: in the slot of the entry it replaces, or at the
// end (slot -1). A replacement lands just behind the hand, so it is looked at last. Callers
// hold mu.
func (c *Cache) placeLocked(e *cacheEntry, slot int) {
	if slot < 0 {
		slot = len(c.ring)
		c.ring = append(c.ring, nil)
	}
	e.slot = slot
	c.ring[slot] = e
}

// removeLocked takes e out of the ring (its entries map entry is the caller's). Callers hold
// mu.
func (c *Cache) removeLocked(e *cacheEntry) {
	last := len(c.ring) - 1
	moved := c.ring[last]
	c.ring[e.slot] = moved
	moved.slot = e.slot
	c.ring[last] = nil
	c.ring = c.ring[:last]
	if c.hand >= len(c.ring) {
		c.hand = 0
	}
}
