package faulttest

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal kills the role when this process dies, so a test
// killed by its timeout leaves no kefu processes holding ports.
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
