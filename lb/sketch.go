package lb

import "hash/maphash"

// sketch counts how often each newcomer reported, in a fixed 64 KiB (a count-min sketch: the
// count of a reporter is the least of its counters in four rows, never below the truth). It
// is what keeps a real load balancer's memory across evictions: a flood of invented reporters
// from its own address may push its line out between two of its checks, but when it comes back
// its count has grown while each invented one's is still 1, and the count decides who makes
// room for whom. The counts are halved every sketchAging additions, so that old reports fade.
type sketch struct {
	seed  maphash.Seed
	rows  [sketchRows][sketchWidth]uint8
	added int
}

const (
	sketchRows  = 4
	sketchWidth = 1 << 14
	sketchAging = 10 * sketchWidth
)

func newSketch() *sketch { return &sketch{seed: maphash.MakeSeed()} }

// hash is the reporter's identity for the sketch.
func (s *sketch) hash(id lineID) uint64 { return maphash.Comparable(s.seed, id) }

// add counts one report of h; its count after it.
func (s *sketch) add(h uint64) int {
	s.added++
	if s.added >= sketchAging {
		s.added = 0
		for r := range s.rows {
			for i := range s.rows[r] {
				s.rows[r][i] /= 2
			}
		}
	}
	least := 255
	for r := range s.rows {
		c := &s.rows[r][slot(h, r)]
		if *c < 255 {
			*c++
		}
		least = min(least, int(*c))
	}
	return least
}

// count is h's count.
func (s *sketch) count(h uint64) int {
	least := 255
	for r := range s.rows {
		least = min(least, int(s.rows[r][slot(h, r)]))
	}
	return least
}

// slot is h's counter in row r: a different 14 bits of the hash for each row.
func slot(h uint64, r int) int { return int(h>>(uint(r)*14)) & (sketchWidth - 1) }
