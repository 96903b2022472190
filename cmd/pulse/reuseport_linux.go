package main

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// setReusePort is a net.ListenConfig Control that lets other processes
// listen on the same address too (SO_REUSEPORT): the kernel spreads new
// connections over the listeners, by a hash of their addresses.
func setReusePort(_, _ string, rc syscall.RawConn) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("SO_REUSEPORT: %w", serr)
	}
	return nil
}
