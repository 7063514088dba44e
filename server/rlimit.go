package server

import (
	"fmt"
	"math"
	"syscall"
)

// ApplyRlimitNofile sets the soft open-files limit as rlimit_nofile asks: "" leaves it alone,
// "max" raises it to the hard limit, a number N sets it to N (lowering it if N is below the
// current soft limit) and is an error if N is above the hard limit, which is never raised.
// before and after are the soft limit around the call. Note that the Go runtime already raises
// the soft limit to the hard limit at startup on Linux, so "" usually means "max" in practice.
func ApplyRlimitNofile(setting string) (before, after uint64, err error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, 0, fmt.Errorf("read the open files limit: %w", err)
	}
	before = lim.Cur
	want, err := parseRlimitSetting(setting)
	switch {
	case err != nil:
		return before, before, err
	case setting == "":
		return before, before, nil
	case want == math.MaxUint64:
		want = lim.Max
	case want > lim.Max:
		return before, before, fmt.Errorf("rlimit_nofile %d is above the hard limit %d", want, lim.Max)
	}
	if want == lim.Cur {
		return before, before, nil
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
