//go:build !linux || !(amd64 || arm64)

package netpoll

// io_uring is used on little-endian Linux, where its buffer ring's layout
// has been checked (see bufRing.publish).
func newUringLoop() (loop, error) { return nil, errUnsupported }
