//go:build !unix

package faulttest

import "errors"

var errNoSIGSTOP = errors.New("this system cannot pause a process (SIGSTOP)")

func pause(int) error  { return errNoSIGSTOP }
func resume(int) error { return errNoSIGSTOP }
