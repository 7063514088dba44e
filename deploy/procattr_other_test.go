//go:build !linux

package deploy_test

import "syscall"

// childAttr: only Linux can tie a child's life to its parent; elsewhere t.Cleanup is all there is.
func childAttr() *syscall.SysProcAttr { return nil }
