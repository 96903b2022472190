//go:build linux && (amd64 || arm64)

package netpoll

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	// uringEntries is the submission queue's size; completions get four
	// times as many slots (and the kernel keeps overflows).
	uringEntries = 4096
	// Each loop has uringBuffers buffers of uringBufferSize bytes for all
	// its sockets: a receive takes one, the handler reads it, it goes
	// back. 256 × 4 KiB is 1 MiB per loop, touched only as it is used.
	uringBuffers    = 256
	uringBufferSize = 4 << 10
	// coalesceBatch: after a wait that brought fewer completions, the
	// loop waits up to coalesce for this many, so that one system call
	// serves many frames.
	coalesceBatch = 256
)

// What a completion is for: the low two bits of its user data. The rest
// is the connection's id.
const (
	tagRecv = iota + 1
	tagCancel
)

// uringLoop is one io_uring instance and the goroutine that owns it: it
// keeps a multishot receive armed on every socket it holds, hands what
// arrives to the handlers, and takes commands (add, pause, resume, close)
// from other goroutines through a queue.
//
// An idle loop waits in Go's own poller for an eventfd that the kernel
// signals when a socket has something and that commands signal too, so
// that no thread sits in a system call: the Go scheduler would otherwise
// take the loop's processor away each time and wake its monitor thread
// every 20 µs to do so, which cost more than the loop's work.
type uringLoop struct {
	ring *ring
	bufs *bufRing
	efd  *os.File
	// The kernel reads waitArg and waitTS while the self-test waits;
	// they live on the heap, which does not move.
	waitArg getEventsArg
	waitTS  unix.Timespec

	mu      sync.Mutex
	cmds    []uringCmd
	spare   []uringCmd
	nextID  uint64
	closing bool
	done    chan struct{}

	// The loop goroutine's own.
	conns   map[uint64]*uringConn
	toClose []int
}

type cmdKind uint8

const (
	cmdAdd cmdKind = iota
	cmdPause
	cmdResume
	cmdClose
)

type uringCmd struct {
	kind cmdKind
	c    *uringConn
}

// uringConn is a socket of an io_uring loop. The loop reads it; writes are
// plain system calls on the caller's goroutine (a tracker's frames are
// few and small), and mu keeps the descriptor from being closed, and its
// number reused, while one is under way.
type uringConn struct {
	l  *uringLoop
	r  *Registration
	id uint64

	mu     sync.RWMutex
	fd     int
	closed bool

	// The loop goroutine's own: a receive is armed; it is being
	// cancelled; the connection wants reading (not paused); reading
	// ended (EOF or error); the connection is closed.
	armed, cancelling, want, ended, gone bool
}

func newUringLoop() (loop, error) {
	l := &uringLoop{done: make(chan struct{}), conns: make(map[uint64]*uringConn)}
	started := make(chan error, 1)
	go l.run(started)
	if err := <-started; err != nil {
		return nil, err
	}
	return l, nil
}

// setup makes the ring on the loop's own thread: with SINGLE_ISSUER and
// DEFER_TASKRUN (Linux 6.1) only that thread may submit, and the kernel
// does the receives' work when the loop asks for completions, in one go.
func (l *uringLoop) setup() error {
	var err error
	l.ring, err = newRing(uringEntries, 4*uringEntries,
		setupSubmitAll|setupSingleIssuer|setupDeferTaskrun,
		setupSubmitAll|setupCoopTaskrun,
		setupSubmitAll)
	if err != nil {
		return err
	}
	if l.bufs, err = newBufRing(l.ring, uringBuffers, uringBufferSize); err != nil {
		l.ring.close()
		return err
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		l.bufs.free()
		l.ring.close()
		return fmt.Errorf("netpoll: eventfd: %w", err)
	}
	l.efd = os.NewFile(uintptr(efd), "io_uring eventfd")
	if err := l.selfTest(); err != nil {
		l.teardown()
		return err
	}
	fd := int32(efd)
	if _, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(l.ring.fd), registerEventfd, uintptr(unsafe.Pointer(&fd)), 1, 0, 0); errno != 0 {
		l.teardown()
		return fmt.Errorf("%w: register eventfd: %v", errUnsupported, errno)
	}
	return nil
}

// selfTest receives a byte through a socket pair the way connections will
// be read, so that a kernel without multishot receives (before Linux 6.0)
// or one that refuses them falls back to epoll.
func (l *uringLoop) selfTest() error {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("netpoll: socketpair: %w", err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	if _, err := unix.Write(fds[1], []byte{42}); err != nil {
		return fmt.Errorf("netpoll: socketpair: %w", err)
	}
	l.armRecv(fds[0], 0)
	l.waitTS = unix.NsecToTimespec(int64(time.Second))
	l.waitArg.ts = uint64(uintptr(unsafe.Pointer(&l.waitTS)))
	if err := l.ring.enter(1, 0, &l.waitArg); err != nil && err != unix.ETIME {
		return fmt.Errorf("%w: io_uring_enter: %v", errUnsupported, err)
	}
	var got cqe
	l.ring.reap(func(c cqe) { got = c })
	if got.flags&cqeFBuffer != 0 {
		bid := uint16(got.flags >> cqeBufferShift)
		if got.res == 1 && l.bufs.buf(bid, 1)[0] != 42 {
			got.res = -1
		}
		l.bufs.put(bid)
		l.bufs.publish()
	}
	if got.res != 1 || got.flags&cqeFMore == 0 {
		return fmt.Errorf("%w: multishot receive: result %d, flags %#x", errUnsupported, got.res, got.flags)
	}
	l.cancelRecv(0)
	// The cancellation and the receive's last completion.
	for n, try := 0, 0; n < 2; n += l.ring.reap(func(cqe) {}) {
		if try++; try > 3 {
			return fmt.Errorf("%w: a multishot receive was not cancelled", errUnsupported)
		}
		if err := l.ring.enter(1, 0, &l.waitArg); err != nil && err != unix.EINTR && err != unix.ETIME {
			return fmt.Errorf("netpoll: io_uring_enter: %w", err)
		}
	}
	return nil
}

func (l *uringLoop) teardown() {
	for _, c := range l.conns {
		c.mu.Lock()
		if !c.closed {
			c.closed = true
			l.toClose = append(l.toClose, c.fd)
		}
		c.mu.Unlock()
	}
	for _, fd := range l.toClose {
		_ = unix.Close(fd)
	}
	l.ring.close()
	l.bufs.free()
	_ = l.efd.Close()
}

func (l *uringLoop) add(c net.Conn, r *Registration) (bool, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false, nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false, nil
	}
	// The loop reads a descriptor of its own, and the net.Conn is
	// closed: otherwise Go's poller would also wake for every packet.
	fd := -1
	var dupErr error
	if err := raw.Control(func(s uintptr) {
		fd, dupErr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return false, fmt.Errorf("netpoll: add: %w", err)
	}
	if dupErr != nil {
		return false, fmt.Errorf("netpoll: add: dup: %w", dupErr)
	}
	_ = c.Close()
	l.mu.Lock()
	l.nextID++
	uc := &uringConn{l: l, r: r, id: l.nextID, fd: fd}
	l.mu.Unlock()
	r.mu.Lock()
	r.impl = uc
	r.mu.Unlock()
	if !l.command(cmdAdd, uc) {
		_ = unix.Close(fd)
		return false, ErrClosed
	}
	return true, nil
}

// command queues a command for the loop and wakes it; false if the loop
// has stopped.
func (l *uringLoop) command(kind cmdKind, c *uringConn) bool {
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return false
	}
	wake := len(l.cmds) == 0
	l.cmds = append(l.cmds, uringCmd{kind, c})
	l.mu.Unlock()
	if wake {
		l.wake()
	}
	return true
}

func (l *uringLoop) wake() {
	one := [8]byte{1}
	_, _ = l.efd.Write(one[:])
}

func (c *uringConn) write(b []byte, timeout time.Duration) error {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.closed {
		return ErrClosed
	}
	deadline := time.Now().Add(timeout)
	for len(b) > 0 {
		n, err := unix.Write(c.fd, b)
		if n > 0 {
			b = b[n:]
			continue
		}
		switch {
		case err == unix.EAGAIN:
			left := time.Until(deadline)
			if left <= 0 {
				return ErrWriteTimeout
			}
			pfd := []unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLOUT}}
			if _, err := unix.Poll(pfd, int(left/time.Millisecond)+1); err != nil && err != unix.EINTR {
				return fmt.Errorf("netpoll: poll: %w", err)
			}
		case err == unix.EINTR:
		case err != nil:
			return fmt.Errorf("netpoll: write: %w", err)
		}
	}
	return nil
}

func (c *uringConn) closeWrite() {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if !c.closed {
		_ = unix.Shutdown(c.fd, unix.SHUT_WR)
	}
}

func (c *uringConn) setPaused(paused bool) {
	if paused {
		c.l.command(cmdPause, c)
	} else {
		c.l.command(cmdResume, c)
	}
}

// close makes writes fail from now on and has the loop close the socket
// once no receive it submitted can refer to its descriptor.
func (c *uringConn) close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	if !c.l.command(cmdClose, c) {
		_ = unix.Close(c.fd) // the loop has stopped, and its ring with it
	}
}

func (l *uringLoop) close() {
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return
	}
	l.closing = true
	l.mu.Unlock()
	l.wake()
	<-l.done
}

func (l *uringLoop) run(started chan<- error) {
	defer close(l.done)
	// The ring belongs to this thread (SINGLE_ISSUER); the thread ends
	// with the goroutine.
	runtime.LockOSThread()
	if err := l.setup(); err != nil {
		started <- err
		return
	}
	started <- nil
	defer l.teardown()
	var signal [8]byte
	reaped := 0
	for {
		switch {
		case reaped == 0: // idle: wait for the kernel or a command
			if _, err := l.efd.Read(signal[:]); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				panic(fmt.Sprintf("netpoll: eventfd: %v", err))
			}
		case reaped < coalesceBatch: // let more gather
			time.Sleep(uringCoalesce)
		}
		if l.commands() {
			return
		}
		l.bufs.publish()
		// Submits, and does the receives' work (DEFER_TASKRUN) now.
		switch err := l.ring.enter(0, enterGetEvents, nil); err {
		case nil, unix.EINTR, unix.EBUSY:
		default:
			panic(fmt.Sprintf("netpoll: io_uring_enter: %v", err))
		}
		if !l.ring.pending() {
			// Nothing submitted refers to these descriptors any more.
			for _, fd := range l.toClose {
				_ = unix.Close(fd)
			}
			l.toClose = l.toClose[:0]
		}
		reaped = l.ring.reap(l.complete)
	}
}

// commands applies the queued commands; true when the loop is to stop.
func (l *uringLoop) commands() bool {
	l.mu.Lock()
	cmds := l.cmds
	l.cmds, l.spare = l.spare[:0], cmds
	closing := l.closing
	l.mu.Unlock()
	for _, cmd := range cmds {
		c := cmd.c
		switch cmd.kind {
		case cmdAdd:
			l.conns[c.id] = c
			c.want = true
			l.arm(c)
		case cmdPause:
			c.want = false
			l.cancel(c)
		case cmdResume:
			c.want = true
			l.arm(c)
		case cmdClose:
			c.want, c.gone = false, true
			l.cancel(c)
			l.toClose = append(l.toClose, c.fd)
			if !c.armed {
				delete(l.conns, c.id)
			}
		}
	}
	return closing
}

// arm starts a multishot receive on c unless one is armed or c should
// not be read.
func (l *uringLoop) arm(c *uringConn) {
	if c.armed || !c.want || c.ended || c.gone {
		return
	}
	c.armed = true
	l.armRecv(c.fd, c.id)
}

func (l *uringLoop) armRecv(fd int, id uint64) {
	e := l.ring.next()
	e.opcode = opRecv
	e.fd = int32(fd)
	e.ioprio = recvMultishot
	e.flags = sqeBufferSelect
	e.userData = id<<2 | tagRecv
}

func (l *uringLoop) cancel(c *uringConn) {
	if !c.armed || c.cancelling {
		return
	}
	c.cancelling = true
	l.cancelRecv(c.id)
}

func (l *uringLoop) cancelRecv(id uint64) {
	e := l.ring.next()
	e.opcode = opAsyncCancel
	e.fd = -1
	e.addr = id<<2 | tagRecv
	e.userData = id<<2 | tagCancel
}

// complete handles one completion.
func (l *uringLoop) complete(e cqe) {
	if e.userData&3 == tagCancel {
		return
	}
	c := l.conns[e.userData>>2]
	if e.flags&cqeFBuffer != 0 {
		bid := uint16(e.flags >> cqeBufferShift)
		if e.res > 0 && c != nil && !c.gone {
			c.r.data(l.bufs.buf(bid, int(e.res)))
		}
		l.bufs.put(bid)
	}
	if c == nil || e.flags&cqeFMore != 0 {
		return
	}
	// The receive is over.
	c.armed, c.cancelling = false, false
	if c.gone {
		delete(l.conns, c.id)
		return
	}
	var err error
	switch {
	case e.res == 0:
		err = io.EOF
	case e.res > 0, e.res == -int32(unix.ENOBUFS), e.res == -int32(unix.ECANCELED), e.res == -int32(unix.EINTR):
		// Out of buffers, paused, or stopped for reasons of its own:
		// read on if wanted.
		l.arm(c)
		return
	default:
		err = syscall.Errno(-e.res)
	}
	c.ended = true
	if errors.Is(err, io.EOF) {
		c.r.ended(io.EOF)
	} else {
		c.r.ended(fmt.Errorf("netpoll: receive: %w", err))
	}
}

// uringCoalesce is how long a busy loop lets completions gather: each
// wait costs a system call and the Go scheduler's handing the loop's
// processor over and back, which at a millisecond cost more than the
// frames it brought.
const uringCoalesce = 5 * time.Millisecond
