package config

import (
	"fmt"
	"math"
	"syscall"
	"testing"
)

// keepRlimit restores the open-files limit after a test that changes it for the whole process.
// The tests here are not parallel: the limit is per process.
func keepRlimit(t *testing.T) syscall.Rlimit {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Errorf("restore the open files limit: %v", err)
		}
	})
	return lim
}

func TestApplyRlimitNofileUnchanged(t *testing.T) {
	lim := keepRlimit(t)
	before, after, err := Rlimit("").Apply()
	if err != nil || before != lim.Cur || after != lim.Cur {
		t.Errorf(`Rlimit("").Apply() = %d, %d, %v; want %d unchanged`, before, after, err, lim.Cur)
	}
}

func TestApplyRlimitNofileNumberAndMax(t *testing.T) {
	lim := keepRlimit(t)
	if lim.Max < 256 {
		t.Skipf("hard limit %d is too low to test below it", lim.Max)
	}
	want := min(lim.Max-1, 4096) // below the hard limit, enough for the test binary
	before, after, err := Rlimit(fmt.Sprint(want)).Apply()
	if err != nil || before != lim.Cur || after != want {
		t.Fatalf("Rlimit(%d).Apply() = %d, %d, %v; want %d, %d", want, before, after, err, lim.Cur, want)
	}
	var now syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &now); err != nil || now.Cur != want || now.Max != lim.Max {
		t.Errorf("limit is now %+v, want soft %d and the hard limit %d untouched", now, want, lim.Max)
	}

	before, after, err = Rlimit("max").Apply()
	if err != nil || before != want || after != lim.Max {
		t.Errorf(`Rlimit("max").Apply() = %d, %d, %v; want %d, %d`, before, after, err, want, lim.Max)
	}
	if _, after, err := Rlimit("max").Apply(); err != nil || after != lim.Max {
		t.Errorf(`second Rlimit("max").Apply() = %d, %v`, after, err)
	}
}

func TestApplyRlimitNofileRefuses(t *testing.T) {
	lim := keepRlimit(t)
	if lim.Max < math.MaxUint64 {
		above := lim.Max + 1
		_, after, err := Rlimit(fmt.Sprint(above)).Apply()
		want := fmt.Sprintf("rlimit_nofile %d is above the hard limit %d", above, lim.Max)
		if err == nil || err.Error() != want || after != lim.Cur {
			t.Errorf("Rlimit(%d).Apply() = %d, %v; want %q and no change", above, after, err, want)
		}
	}
	for _, bad := range []string{"lots", "0", "-1", "4096 ", "Max"} {
		_, after, err := Rlimit(bad).Apply()
		want := fmt.Sprintf(`rlimit_nofile must be "max" or a positive integer, got %q`, bad)
		if err == nil || err.Error() != want || after != lim.Cur {
			t.Errorf("Rlimit(%q).Apply() = %d, %v; want %q and no change", bad, after, err, want)
		}
	}
}

func TestCheckRlimitNofile(t *testing.T) {
	lim := keepRlimit(t)
	ok := []string{"", "max", "1", fmt.Sprint(lim.Cur)}
	if lim.Max < math.MaxUint64 {
		ok = append(ok, fmt.Sprint(lim.Max))
	}
	for _, s := range ok {
		if err := Rlimit(s).Check(); err != nil {
			t.Errorf("Rlimit(%q).Check() = %v, want nil", s, err)
		}
	}
	type refusal struct{ setting, want string }
	refused := []refusal{{"lots", `rlimit_nofile must be "max" or a positive integer, got "lots"`}, {"0", `rlimit_nofile must be "max" or a positive integer, got "0"`}}
	if lim.Max < math.MaxUint64 {
		above := lim.Max + 1
		refused = append(refused, refusal{fmt.Sprint(above), fmt.Sprintf("rlimit_nofile %d is above the hard limit %d", above, lim.Max)})
	} else {
		t.Log("no hard limit: the above-the-hard-limit case cannot happen here")
	}
	for _, tc := range refused {
		err := Rlimit(tc.setting).Check()
		if err == nil || err.Error() != tc.want {
			t.Errorf("Rlimit(%q).Check() = %v, want %q", tc.setting, err, tc.want)
		}
		// Same verdict as serve: Apply refuses it with the same error.
		if _, _, aerr := Rlimit(tc.setting).Apply(); aerr == nil || aerr.Error() != tc.want {
			t.Errorf("Rlimit(%q).Apply() = %v, want %q like CheckRlimitNofile", tc.setting, aerr, tc.want)
		}
	}
	// Checking changes nothing, not even for "1" or "max".
	var now syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &now); err != nil || now != lim {
		t.Errorf("limit is now %+v (%v), want %+v untouched", now, err, lim)
	}
}
