// Package published keeps a map that every request reads, from every core, and that changes
// rarely: readers look keys up in an immutable copy published through an atomic pointer (no
// lock, no shared write, a plain Go map lookup rather than sync.Map's hash trie, whose nodes
// cost a cache miss each once thousands of keys are spread through memory). The owner keeps the
// authoritative map under its own lock, where new keys go first, and republishes it after a
// number of locked lookups proportional to its size, which keeps publishing amortised O(1) per
// lookup (sync.Map's own scheme).
package published

import (
	"maps"
	"sync/atomic"
)

// Map is the published copy of an owner's map. The zero value publishes an empty map. Load
// may be called from anywhere; Publish and Missed only under the owner's lock.
type Map[K comparable, V any] struct {
	read        atomic.Pointer[map[K]V]
	unpublished int // locked lookups since the last publish; guarded by the owner's lock
}

// Load returns the published map. It is never modified: read it, never write it. A lookup in it
// with m[string(b)] allocates nothing, as with any map.
func (p *Map[K, V]) Load() map[K]V {
	if m := p.read.Load(); m != nil {
		return *m
	}
	return nil
}

// Publish makes the published map a copy of all.
func (p *Map[K, V]) Publish(all map[K]V) {
	published := maps.Clone(all)
	if published == nil {
		published = map[K]V{}
	}
	p.read.Store(&published)
	p.unpublished = 0
}

// Missed counts a lookup that had to take the owner's lock (a key not yet published, or a new
// one), publishing all once they outnumber a quarter of its keys; published says it did.
func (p *Map[K, V]) Missed(all map[K]V) (published bool) {
	if p.unpublished++; p.unpublished > len(all)/4 {
		p.Publish(all)
		return true
	}
	return false
}
