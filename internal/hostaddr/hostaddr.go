// Package hostaddr says which client addresses are taken as one host where hacheck shares a
// bound among clients (the agent listener's connections, the load-balancer tracker's room for
// newcomers).
package hostaddr

import "net/netip"

// Prefix is a's host: the address itself for IPv4 (IPv4-mapped IPv6 included), its /64 for
// IPv6, the least a single host is usually given.
func Prefix(a netip.Addr) netip.Prefix {
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p
	}
	return netip.PrefixFrom(a, a.BitLen())
}
