package hostaddr

import (
	"net/netip"
	"testing"
)

func TestPrefix(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.1":            "10.0.0.1/32",
		"::ffff:10.0.0.1":     "10.0.0.1/32",
		"2001:db8:1:2:3::4":   "2001:db8:1:2::/64",
		"fe80::1%eth0":        "fe80::/64",
		"2001:db8:1:2:ffff::": "2001:db8:1:2::/64",
	} {
		if got := Prefix(netip.MustParseAddr(in)); got.String() != want {
			t.Errorf("Prefix(%s) = %s, want %s", in, got, want)
		}
	}
	if got := Prefix(netip.Addr{}); got.IsValid() {
		t.Errorf("Prefix(zero) = %v, want an invalid prefix", got)
	}
}
