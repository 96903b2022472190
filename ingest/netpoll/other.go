//go:build !linux

package netpoll

func newEpollLoop() (loop, error) { return nil, errUnsupported }
