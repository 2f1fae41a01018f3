//go:build !linux

package faulttest

import "os/exec"

// setParentDeathSignal is Linux only; elsewhere a role outlives a killed
// test process until it is stopped by hand.
func setParentDeathSignal(*exec.Cmd) {}
