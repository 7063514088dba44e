package server

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"
)

// listenFDsStart is the first descriptor of sockets passed by socket activation (SD_LISTEN_FDS_START).
const listenFDsStart = 3

// maxListenFDs bounds LISTEN_FDS: hacheck listens on a handful of ports, and a huge number is a
// mistake to report rather than thousands of descriptors to probe.
const maxListenFDs = 64

// InheritedListeners returns the listening sockets handed to this process by systemd socket
// activation (LISTEN_FDS=n and LISTEN_PID=<this process>, descriptors 3 to 3+n-1), each wrapped
// like Listen's, or nil when none were handed over. Sockets whose LISTEN_PID names another
// process were meant for it (a parent that did not clear its environment) and are not taken.
// The variables are removed from the environment either way, so no child process inherits
// them. A descriptor that is not a listening socket is an error.
func InheritedListeners() ([]net.Listener, error) {
	pid, fds := os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS")
	os.Unsetenv("LISTEN_PID")
	os.Unsetenv("LISTEN_FDS")
	os.Unsetenv("LISTEN_FDNAMES")
	n, err := parseListenEnv(pid, fds, os.Getpid())
	if err != nil || n == 0 {
		return nil, err
	}
	listeners := make([]net.Listener, 0, n)
	fail := func(err error) ([]net.Listener, error) {
		for _, l := range listeners {
			l.Close()
		}
		return nil, err
	}
	for fd := listenFDsStart; fd < listenFDsStart+n; fd++ {
		l, err := inheritedListener(fd)
		if err != nil {
			return fail(err)
		}
		listeners = append(listeners, Wrap(l))
	}
	return listeners, nil
}

// parseListenEnv is the number of sockets LISTEN_PID and LISTEN_FDS hand to process self: 0
// when none are, or when they are meant for another process.
func parseListenEnv(pid, fds string, self int) (int, error) {
	if fds == "" {
		return 0, nil
	}
	if p, err := strconv.Atoi(pid); err != nil || p != self {
		return 0, nil
	}
	n, err := strconv.Atoi(fds)
	if err != nil || n < 0 || n > maxListenFDs {
		return 0, fmt.Errorf("LISTEN_FDS=%q: want a number of sockets from 0 to %d", fds, maxListenFDs)
	}
	return n, nil
}

// inheritedListener makes a net.Listener of descriptor fd, which must be a listening socket.
func inheritedListener(fd int) (net.Listener, error) {
	// The descriptor was inherited without close-on-exec; nothing hacheck starts needs it.
	syscall.CloseOnExec(fd)
	accepting, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_ACCEPTCONN)
	if err != nil {
		return nil, fmt.Errorf("socket activation: descriptor %d is not a socket: %w", fd, err)
	}
	if accepting == 0 {
		return nil, fmt.Errorf("socket activation: descriptor %d is a socket that is not listening", fd)
	}
	f := os.NewFile(uintptr(fd), "LISTEN_FDS "+strconv.Itoa(fd))
	defer f.Close() // FileListener holds a duplicate
	l, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("socket activation: descriptor %d: %w", fd, err)
	}
	if _, ok := l.Addr().(*net.TCPAddr); !ok {
		l.Close()
		return nil, fmt.Errorf("socket activation: descriptor %d is not a TCP socket (%s)", fd, l.Addr().Network())
	}
	return l, nil
}
