//go:build !linux || !(amd64 || arm64)

package netpoll

import "time"

// io_uring is used on little-endian Linux, where its buffer ring's layout
// has been checked (see bufRing.publish).
func newUringLoop(time.Duration) (loop, error) { return nil, errUnsupported }
