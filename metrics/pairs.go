package metrics

import (
	"math/bits"
	"sync"
	"sync/atomic"
)

// pairCounts is /status/count's requests per (service, source) pair: one flat open-addressed
// table of counters written on every request. A per-service map of per-source counters cost
// ~2.5 µs a request in the load harness's fleet case (1,000 services × 50 sources): a chain
// of dependent reads (map, group, key, counter) that the kernel's socket work evicts from the
// CPU caches between requests. Here a request's pair is found at the slot its key hashes to,
// the counter beside the key: usually one cache line. The table holds no pointers, so the
// garbage collector never scans it, and its pages are touched only as pairs arrive. Against a
// map of counters under a read-write lock: +1.7% req/s on the load harness's 1,000 services ×
// 50 sources with a new connection per request (HAProxy's way), 7 of 7 alternating rounds.
type pairCounts struct {
	slots []pairSlot   // len is a power of two
	shift uint         // 64 - log2(len(slots))
	pairs atomic.Int64 // pairs counted as themselves, for the cap
	taken atomic.Int64 // slots taken, "other" pairs included
	// overflow is the (other, other) slot, made first: where a request's pair goes when
	// nothing else can take it.
	overflow    *pairSlot
	otherSource uint32 // the id of source label "other"

	mu       sync.Mutex
	services []*serviceSeries // by service id
	sources  []string         // source label by id
	sourceID readMostly[string, uint32]
}

type pairSlot struct {
	key   atomic.Uint64 // pairKey; 0: empty
	count atomic.Int64
}

// maxSourcePairs bounds /status/count as a whole: each cap alone allows MaxServices ×
// MaxSources (service, source) pairs, the product the metrics avoid on purpose. Past it, a
// service's new sources count under source "other". It is a soft cap: requests racing for the
// last free pairs may take a few more. 100,000 pairs hold a fleet of 2,000 services each checked
// by 50 load balancers.
const maxSourcePairs = 100_000

// pairSlots is the table's size: at most half full at the cap, so probes stay short, with
// room for each service's "other" pair beyond it. 4 MiB, resident only where used.
const pairSlots = 1 << 18

// maxPairLoad is where even "other" pairs stop being added: past it, requests of new pairs
// count under the pre-made (other, other) pair, so the table never fills.
const maxPairLoad = pairSlots * 3 / 4

const (
	otherServiceID   = 0
	invalidServiceID = 1
)

func newPairCounts(other, invalid *serviceSeries) *pairCounts {
	p := &pairCounts{slots: make([]pairSlot, pairSlots), shift: uint(64 - bits.TrailingZeros(pairSlots))}
	other.id, invalid.id = otherServiceID, invalidServiceID
	p.services = []*serviceSeries{other, invalid}
	p.otherSource = p.sourceIDOf(LabelOther)
	p.overflow, _ = p.claim(pairKey(otherServiceID, p.otherSource))
	return p
}

func pairKey(service, source uint32) uint64 { return uint64(service+1)<<32 | uint64(source) }

// registerService gives a new service slot its id. Callers serialise (the service limiter's
// lock), and ids are never reused: service slots live as long as the process.
func (p *pairCounts) registerService(svc *serviceSeries) {
	p.mu.Lock()
	defer p.mu.Unlock()
	svc.id = uint32(len(p.services))
	p.services = append(p.services, svc)
}

// sourceIDOf is the id of a source label, made on first use. Source labels are bounded by
// max_source_ips plus the network names, "other" and "unknown".
func (p *pairCounts) sourceIDOf(label string) uint32 {
	if id, ok := p.sourceID.loadPublished(label); ok {
		return id
	}
	id, _ := p.sourceID.loadOrStore(label, func() (uint32, bool) {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.sources = append(p.sources, label)
		return uint32(len(p.sources) - 1), true
	})
	return id
}

// add counts one request of service from source.
func (p *pairCounts) add(service, source uint32) {
	key := pairKey(service, source)
	slot := p.find(key)
	if slot == nil {
		// A new pair: counted as itself below the cap, else under the service's "other".
		if p.pairs.Load() < maxSourcePairs {
			var fresh bool
			if slot, fresh = p.claim(key); fresh {
				p.pairs.Add(1)
			}
		}
		if slot == nil {
			slot = p.otherPair(service)
		}
	}
	slot.count.Add(1)
}

// otherPair is the slot of (service, "other"), or of (other, other) once the table is full.
func (p *pairCounts) otherPair(service uint32) *pairSlot {
	key := pairKey(service, p.otherSource)
	if slot := p.find(key); slot != nil {
		return slot
	}
	if p.taken.Load() < maxPairLoad {
		if slot, _ := p.claim(key); slot != nil {
			return slot
		}
	}
	return p.overflow
}

// maxProbes bounds a lookup. At the load the table is kept under, a probe sequence is a few
// slots long; the bound only matters if racing requests ever pushed it near full.
const maxProbes = 1024

// find returns key's slot, or nil when the pair has none (or none within maxProbes).
func (p *pairCounts) find(key uint64) *pairSlot {
	i := p.home(key)
	for range maxProbes {
		switch p.slots[i].key.Load() {
		case key:
			return &p.slots[i]
		case 0:
			return nil
		}
		i = (i + 1) & uint64(len(p.slots)-1)
	}
	return nil
}

// claim returns key's slot, taking an empty one for it if no other request did first; fresh
// says this call took it. It is nil when no slot within maxProbes is free.
func (p *pairCounts) claim(key uint64) (slot *pairSlot, fresh bool) {
	i := p.home(key)
	for range maxProbes {
		slot := &p.slots[i]
		k := slot.key.Load()
		if k == 0 && slot.key.CompareAndSwap(0, key) {
			p.taken.Add(1)
			return slot, true
		}
		if k == key || slot.key.Load() == key {
			return slot, false
		}
		i = (i + 1) & uint64(len(p.slots)-1)
	}
	return nil, false
}

func (p *pairCounts) home(key uint64) uint64 {
	return (key * 0x9E3779B97F4A7C15) >> p.shift
}

// each calls f for every pair with its service slot, source label and count.
func (p *pairCounts) each(f func(svc *serviceSeries, source string, n int64)) {
	p.mu.Lock()
	services, sources := p.services, p.sources
	p.mu.Unlock()
	for i := range p.slots {
		key := p.slots[i].key.Load()
		if key == 0 {
			continue
		}
		service, source := int(key>>32)-1, int(uint32(key))
		if service < len(services) && source < len(sources) {
			f(services[service], sources[source], p.slots[i].count.Load())
		}
	}
}
