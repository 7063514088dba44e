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
	lim, err := readRlimitNofile()
	if err != nil {
		return 0, 0, err
	}
	before = lim.Cur
	want, change, err := rlimitTarget(setting, lim)
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

// CheckRlimitNofile reports whether ApplyRlimitNofile(setting) would be refused (a malformed
// setting, or a number above the current hard limit) without changing anything; it is for
// --check-config. Config.Validate only checks the form: the hard limit belongs to the process.
func CheckRlimitNofile(setting string) error {
	lim, err := readRlimitNofile()
	if err != nil {
		return err
	}
	_, _, err = rlimitTarget(setting, lim)
	return err
}

func readRlimitNofile() (syscall.Rlimit, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return lim, fmt.Errorf("read the open files limit: %w", err)
	}
	return lim, nil
}

// rlimitTarget is the one rule for rlimit_nofile against the current limits lim: the soft limit
// it asks for, and whether that differs from lim.Cur; an error if it is malformed or above the
// hard limit.
func rlimitTarget(setting string, lim syscall.Rlimit) (want uint64, change bool, err error) {
	want, err = parseRlimitSetting(setting)
	switch {
	case err != nil:
		return 0, false, err
	case setting == "":
		return lim.Cur, false, nil
	case want == math.MaxUint64:
		want = lim.Max
	case want > lim.Max:
		return 0, false, fmt.Errorf("rlimit_nofile %d is above the hard limit %d", want, lim.Max)
	}
	return want, want != lim.Cur, nil
}
