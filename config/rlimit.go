package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"syscall"

	"gopkg.in/yaml.v3"
)

// Rlimit is rlimit_nofile: "" leaves the open-files limit alone, "max" (any case in a file)
// raises the soft limit to the hard limit, a positive decimal number sets the soft limit to it.
// Validate checks only the form; whether a number fits under the hard limit belongs to the
// process, and Apply and Check judge it.
type Rlimit string

func (r *Rlimit) UnmarshalYAML(n *yaml.Node) error {
	s, ok := scalarText(n)
	if !ok {
		return wrong(n, false)
	}
	if strings.EqualFold(s, "max") {
		s = "max"
	}
	*r = Rlimit(s) // Validate judges the number
	return nil
}

// limit returns the limit asked for: 0 for "" (leave it), math.MaxUint64 for "max", else the
// number.
func (r Rlimit) limit() (uint64, error) {
	switch r {
	case "":
		return 0, nil
	case "max":
		return math.MaxUint64, nil
	}
	n, err := strconv.ParseUint(string(r), 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("rlimit_nofile %s, got %s", fieldByKey["rlimit_nofile"].want, quoteCut(string(r)))
	}
	return n, nil
}

// Apply sets the soft open-files limit as r asks: a number N sets it to N (lowering it if N is
// below the current soft limit) and is an error if N is above the hard limit, which is never
// raised. before and after are the soft limit around the call. The Go runtime already raises
// the soft limit to the hard limit at startup on Linux, so "" usually means "max" in practice.
func (r Rlimit) Apply() (before, after uint64, err error) {
	lim, err := readRlimitNofile()
	if err != nil {
		return 0, 0, err
	}
	before = lim.Cur
	want, change, err := r.target(lim)
	if err != nil || !change {
		return before, before, err
	}
	lim.Cur = want
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return before, before, fmt.Errorf("set the open files limit to %d: %w", want, err)
	}
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return before, want, nil
	}
	return before, lim.Cur, nil
}

// Check reports whether Apply would refuse r (a malformed setting, or a number above the
// current hard limit) without changing anything; it is for --check-config.
func (r Rlimit) Check() error {
	lim, err := readRlimitNofile()
	if err != nil {
		return err
	}
	_, _, err = r.target(lim)
	return err
}

func readRlimitNofile() (syscall.Rlimit, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return lim, fmt.Errorf("read the open files limit: %w", err)
	}
	return lim, nil
}

// target is the one rule for r against the current limits lim: the soft limit it asks for,
// and whether that differs from lim.Cur; an error if it is malformed or above the hard limit.
func (r Rlimit) target(lim syscall.Rlimit) (want uint64, change bool, err error) {
	want, err = r.limit()
	switch {
	case err != nil:
		return 0, false, err
	case r == "":
		return lim.Cur, false, nil
	case want == math.MaxUint64:
		want = lim.Max
	case want > lim.Max:
		return 0, false, fmt.Errorf("rlimit_nofile %d is above the hard limit %d", want, lim.Max)
	}
	return want, want != lim.Cur, nil
}
