//go:build !linux

package main

import (
	"errors"
	"syscall"
)

// setReusePort refuses: sharing a listen address between processes is
// only done on Linux, where the kernel spreads connections over them.
func setReusePort(_, _ string, _ syscall.RawConn) error {
	return errors.New("sharing the ingest address (-ingest-reuse-port) needs Linux")
}
