//go:build !linux

package netpoll

import "net"

const epollSupported = false

// loop is never made where there is no epoll.
type loop struct{}

func newLoop() (*loop, error) { return &loop{}, nil }

func (*loop) add(net.Conn, Handler, *Registration) (bool, error) {
	return false, nil
}

func (*loop) close() {}
