//go:build linux

package deploy_test

import "syscall"

// childAttr makes the kernel kill a subprocess if the test binary dies without running its
// cleanups (a -timeout panic, a kill -9), so no haproxy, prometheus or hacheck outlives it.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
