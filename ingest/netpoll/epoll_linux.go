package netpoll

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

// readBufferSize is an epoll loop's read buffer: one read takes whatever a
// peer sent since the last, up to a 64 KiB frame in one go.
const readBufferSize = 64 << 10

// epollLoop is one epoll instance and the goroutine that waits on it.
// Sockets are level-triggered: one read per readiness, and a socket with
// more left is reported again by the next wait.
type epollLoop struct {
	epfd   int
	wake   [2]int // a pipe that ends the wait on close
	mu     sync.Mutex
	conns  map[int32]*epollConn
	closed bool
	done   chan struct{}
}

type epollConn struct {
	netConn
	l   *epollLoop
	fd  int32
	raw syscall.RawConn
	r   *Registration
}

const readEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP

func newEpollLoop() (loop, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("netpoll: epoll_create1: %w", err)
	}
	l := &epollLoop{epfd: epfd, conns: make(map[int32]*epollConn), done: make(chan struct{})}
	if err := syscall.Pipe2(l.wake[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		syscall.Close(epfd)
		return nil, fmt.Errorf("netpoll: pipe: %w", err)
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(l.wake[0])}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, l.wake[0], &ev); err != nil {
		l.closeFDs()
		return nil, fmt.Errorf("netpoll: epoll_ctl: %w", err)
	}
	go l.run()
	return l, nil
}

func (l *epollLoop) closeFDs() {
	syscall.Close(l.epfd)
	syscall.Close(l.wake[0])
	syscall.Close(l.wake[1])
}

// rawConn returns c's descriptor access, if c is a socket with one.
func rawConn(c net.Conn) (syscall.RawConn, bool) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, false
	}
	raw, err := sc.SyscallConn()
	return raw, err == nil
}

func (l *epollLoop) add(c net.Conn, r *Registration) (bool, error) {
	raw, ok := rawConn(c)
	if !ok {
		return false, nil
	}
	ec := &epollConn{netConn: netConn{c}, l: l, raw: raw, r: r}
	r.mu.Lock()
	r.impl = ec // before the first event can arrive
	r.mu.Unlock()
	var ctlErr error
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false, ErrClosed
	}
	err := raw.Control(func(fd uintptr) {
		ec.fd = int32(fd)
		ev := syscall.EpollEvent{Events: readEvents, Fd: int32(fd)}
		ctlErr = syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if err == nil {
		err = ctlErr
	}
	if err != nil {
		return false, fmt.Errorf("netpoll: add: %w", err)
	}
	l.conns[ec.fd] = ec
	return true, nil
}

// remove stops waiting for the socket.
func (ec *epollConn) remove() {
	l := ec.l
	l.mu.Lock()
	if l.conns[ec.fd] == ec {
		delete(l.conns, ec.fd)
	}
	l.mu.Unlock()
	// A closed socket has left the epoll set by itself; Control then
	// fails, which is fine.
	_ = ec.raw.Control(func(fd uintptr) {
		_ = syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
	})
}

func (ec *epollConn) close() {
	ec.remove()
	_ = ec.c.Close()
}

func (ec *epollConn) setPaused(paused bool) {
	ev := syscall.EpollEvent{Events: readEvents, Fd: ec.fd}
	if paused {
		ev.Events = 0
	}
	_ = ec.raw.Control(func(fd uintptr) {
		_ = syscall.EpollCtl(ec.l.epfd, syscall.EPOLL_CTL_MOD, int(fd), &ev)
	})
}

func (l *epollLoop) run() {
	defer close(l.done)
	events := make([]syscall.EpollEvent, 256)
	buf := make([]byte, readBufferSize)
	for {
		n, err := syscall.EpollWait(l.epfd, events, -1)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			return
		}
		for i := range n {
			fd := events[i].Fd
			if fd == int32(l.wake[0]) {
				return
			}
			l.mu.Lock()
			ec := l.conns[fd]
			l.mu.Unlock()
			if ec != nil {
				ec.read(buf)
			}
		}
		if n < len(events)/4 {
			// Few sockets were ready: let more become ready before the
			// next wait, so that one wait serves many of them. Under
			// load a wait per frame cost as much as the frame's read.
			time.Sleep(coalesce)
		}
	}
}

// coalesce is how long a loop lets readiness gather after a wait that
// found few sockets ready; it adds at most that to a frame's latency.
const coalesce = time.Millisecond

// read reads once and hands the bytes to the handler. RawConn.Read keeps
// the descriptor from being closed and reused while it reads, and returns
// an error, without reading, once the connection is closed.
func (ec *epollConn) read(buf []byte) {
	var n int
	var readErr error
	err := ec.raw.Read(func(fd uintptr) bool {
		n, readErr = syscall.Read(int(fd), buf)
		return true
	})
	if err == nil {
		err = readErr
	}
	switch {
	case n > 0:
		ec.r.data(buf[:n])
	case errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR):
	case err == nil: // n == 0: the peer closed
		ec.remove()
		ec.r.ended(io.EOF)
	default:
		ec.remove()
		ec.r.ended(err)
	}
}

func (l *epollLoop) close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.mu.Unlock()
	_, _ = syscall.Write(l.wake[1], []byte{0})
	<-l.done
	l.closeFDs()
}

// failed is nil: an epoll loop does not stop by itself.
func (l *epollLoop) failed() error { return nil }

func (l *epollLoop) mode() Mode { return Epoll }
