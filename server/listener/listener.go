// Package listener is hacheck's TCP listeners at the connection level, kept here so that each
// device can be reviewed, measured or removed as a unit: hostfix.go lets HTTP/1.1 check
// requests without a Host header reach the handler (HAProxy's `option httpchk GET /x HTTP/1.1`
// sends none, and net/http would refuse them with a 400); agent.go is the agent-check
// listener's connections (read window, bounds, who makes room for whom), answering with
// whatever its owner says.
//
// A wrapped connection also carries its client's address, read once at accept (Source).
package listener

import (
	"net"
	"net/netip"
)

// Wrap returns l with the Host-less HTTP/1.1 fix applied to every connection it accepts.
// maxHeaderBytes bounds how much of a first request is buffered while looking for its Host
// line; use the http.Server's MaxHeaderBytes.
func Wrap(l net.Listener, maxHeaderBytes int) net.Listener {
	return hostFixListener{Listener: l, maxHeaderBytes: maxHeaderBytes}
}

// Source is the client address of a connection accepted by a wrapped listener (IPv4-mapped
// addresses unmapped), or the zero Addr for any other connection.
func Source(c net.Conn) netip.Addr {
	if fixed, ok := c.(*hostFixConn); ok {
		return fixed.source
	}
	return netip.Addr{}
}
