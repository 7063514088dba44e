package config

import (
	"encoding/json"
	"math"
	"runtime/debug"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// MemoryLimit is memory_limit: the soft limit the server sets on the memory the Go runtime
// holds (runtime/debug.SetMemoryLimit), in bytes; 0 sets none. In a file it is a byte count,
// or a number with a unit as the GOMEMLIMIT environment variable takes it (B, KiB, MiB, GiB,
// TiB), or "off". The runtime collects garbage harder as the limit nears, so a flood of
// requests, which leaves garbage rather than live data, stays within it; live data beyond it
// is never refused, only collected for more often.
type MemoryLimit int64

// minMemoryLimit keeps a limit from being so low that the server does little but collect.
const minMemoryLimit = 16 << 20

var memoryUnits = []struct {
	suffix string
	shift  uint
}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}, {"B", 0}}

func (m *MemoryLimit) UnmarshalYAML(n *yaml.Node) error {
	s, ok := scalarText(n)
	if !ok {
		return wrong(n, false)
	}
	v, ok := parseMemoryLimit(s)
	if !ok {
		return wrong(n, false)
	}
	*m = MemoryLimit(v)
	return nil
}

func parseMemoryLimit(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	if strings.EqualFold(s, "off") {
		return 0, true
	}
	shift := uint(0)
	for _, u := range memoryUnits {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, shift = strings.TrimSpace(rest), u.shift
			break
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 || v > math.MaxInt64>>shift {
		return 0, false
	}
	return v << shift, true
}

// String is the limit as memory_limit would take it: "off", or bytes in the largest unit
// that divides them.
func (m MemoryLimit) String() string {
	if m == 0 {
		return "off"
	}
	for _, u := range memoryUnits {
		if u.shift > 0 && int64(m)%(1<<u.shift) == 0 {
			return strconv.FormatInt(int64(m)>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(m), 10)
}

func (m MemoryLimit) MarshalJSON() ([]byte, error) { return json.Marshal(m.String()) }

// Apply sets the runtime's soft memory limit to m, unless the GOMEMLIMIT environment variable
// is set (getenv says), which wins: the runtime has applied it at startup. It returns the
// limit in force and whether it came from the environment.
func (m MemoryLimit) Apply(getenv func(string) string) (limit int64, fromEnv bool) {
	if getenv("GOMEMLIMIT") != "" {
		return debug.SetMemoryLimit(-1), true
	}
	if m == 0 {
		debug.SetMemoryLimit(math.MaxInt64)
		return math.MaxInt64, false
	}
	debug.SetMemoryLimit(int64(m))
	return int64(m), false
}
