//go:build unix

package faulttest

import "syscall"

// pause stops a process with SIGSTOP, as a stalled VM or a debugger would.
func pause(pid int) error { return syscall.Kill(pid, syscall.SIGSTOP) }

// resume lets a paused process go on (SIGCONT).
func resume(pid int) error { return syscall.Kill(pid, syscall.SIGCONT) }
