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
	"sync/atomic"
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
	// back. 512 × 2 KiB is 1 MiB per loop, touched only as it is used.
	// Most frames are small (a classic frame about 40 bytes, a tracker
	// batch of 20 events about 1.3 KB), so the count matters more than
	// the size.
	uringBuffers    = 512
	uringBufferSize = 2 << 10
	// roundFill is how many completions a busy loop lets gather in a
	// round (see roundWait); the buffers beyond are headroom for bursts.
	// A round that finds the buffers used up ends its sockets' receives
	// (ENOBUFS), and each then costs a new submission. Each round costs
	// a wake-up of the loop's thread, too, so fewer, fuller rounds are
	// cheaper: small buffers in number let one round take many small
	// frames (2 KiB buffers cost a classic event at 20,000 a second about
	// a tenth less CPU than half as many of 4 KiB, bench/run.sh paced).
	roundFill = uringBuffers * 3 / 4
)

// What a completion is for: the low two bits of its user data. The rest
// is the connection's id.
const (
	tagRecv = iota + 1
	tagCancel
	tagSend
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
	ring  *ring
	bufs  *bufRing
	efd   *os.File
	round time.Duration // see Options.Round
	// The kernel reads these while the loop enters the ring; they live
	// on the heap, which does not move. noWait has a timeout of zero.
	waitArg, noWait getEventsArg
	waitTS, zeroTS  unix.Timespec

	mu      sync.Mutex
	cmds    []uringCmd
	spare   []uringCmd
	nextID  uint64
	closing bool
	done    chan struct{}
	// idle is set while the loop waits for the eventfd, or is about to.
	idle atomic.Bool
	// outOfBuffers counts the receives that ended because every buffer
	// was in use (ENOBUFS), to be read again next round.
	outOfBuffers atomic.Int64
	// err is why the loop stopped by itself (set under mu with closing);
	// injected, if set, is taken as the next io_uring_enter's result, for
	// tests of that.
	err      error
	injected atomic.Pointer[error]

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
	cmdSend
)

type uringCmd struct {
	kind cmdKind
	c    *uringConn
	send *sendReq
}

// sendReq is bytes to send; done, if any, gets the outcome.
type sendReq struct {
	b    []byte
	done chan error
}

// uringConn is a socket of an io_uring loop. The loop reads it and sends
// what Write and Send queue, in order, one send at a time; mu keeps the
// descriptor from being closed, and its number reused, while closeWrite
// uses it.
type uringConn struct {
	l  *uringLoop
	r  *Registration
	id uint64

	mu     sync.RWMutex
	fd     int
	closed bool
	queued atomic.Int64 // bytes Send queued and the loop has not sent

	// The loop goroutine's own: what there is to send, nil while there
	// is nothing (most connections, most of the time, so they do not
	// carry its fields); the first send error.
	out     *outbox
	sendErr error

	// The loop goroutine's own: a receive is armed; it is being
	// cancelled; the connection wants reading (not paused); reading
	// ended (EOF or error); the connection is closed.
	armed, cancelling, want, ended, gone bool
}

// outbox is what a uringConn has to send: the requests that wait, and
// those the send under way carries, whose bytes are joined in buf, of
// which off are sent.
type outbox struct {
	queue    []*sendReq
	inflight []*sendReq
	buf      []byte
	off      int
	busy     bool // a send is under way
}

// sending reports whether a send of c's is under way.
func (c *uringConn) sending() bool { return c.out != nil && c.out.busy }

func newUringLoop(round time.Duration) (loop, error) {
	l := &uringLoop{round: round, done: make(chan struct{}), conns: make(map[uint64]*uringConn)}
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
	if err := l.ring.enter(1, 0, &l.waitArg, true); err != nil && err != unix.ETIME {
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
	l.cancelOp(0, tagRecv)
	// The cancellation and the receive's last completion.
	for n, try := 0, 0; n < 2; n += l.ring.reap(func(cqe) {}) {
		if try++; try > 3 {
			return fmt.Errorf("%w: a multishot receive was not cancelled", errUnsupported)
		}
		if err := l.ring.enter(1, 0, &l.waitArg, true); err != nil && err != unix.EINTR && err != unix.ETIME {
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
	if err := l.failed(); err != nil {
		return false, fmt.Errorf("%w: %w", errLoopFailed, err)
	}
	raw, ok := rawConn(c)
	if !ok {
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
	if !l.command(cmdAdd, uc, nil) {
		_ = unix.Close(fd)
		return false, ErrClosed
	}
	return true, nil
}

// command queues a command for the loop and wakes it; false if the loop
// has stopped.
func (l *uringLoop) command(kind cmdKind, c *uringConn, send *sendReq) bool {
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return false
	}
	l.cmds = append(l.cmds, uringCmd{kind, c, send})
	l.mu.Unlock()
	// A busy loop takes commands at its next round, within its round
	// interval; only an idle one needs waking.
	if l.idle.Load() {
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
	closed := c.closed
	c.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	req := &sendReq{b: b, done: make(chan error, 1)}
	if !c.l.command(cmdSend, c, req) {
		return ErrClosed
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-req.done:
		return err
	case <-t.C:
		// The bytes stay queued until the connection is closed, which
		// the writer does after a timeout.
		return ErrWriteTimeout
	}
}

func (c *uringConn) send(b []byte) bool {
	if c.queued.Add(int64(len(b))) > maxQueuedSend {
		c.queued.Add(-int64(len(b)))
		return false
	}
	c.l.command(cmdSend, c, &sendReq{b: b})
	return true
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
		c.l.command(cmdPause, c, nil)
	} else {
		c.l.command(cmdResume, c, nil)
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
	if !c.l.command(cmdClose, c, nil) {
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
	l.wake() // whether idle or not: it may be about to be
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
	l.noWait.ts = uint64(uintptr(unsafe.Pointer(&l.zeroTS)))
	var signal [8]byte
	reaped := 0
	// period is the time between the last two rounds' reaping, in
	// which reaped completions came.
	last, period := time.Now(), time.Duration(0)
	for {
		switch {
		case reaped == 0 && !l.hasCommands(): // idle: wait for the kernel or a command
			// The eventfd is signalled only while the loop is idle.
			// What came in while it was not is done first.
			l.ring.signalEventfd(true)
			caughtUp, err := l.caughtUp()
			if err == nil && caughtUp {
				if _, rerr := l.efd.Read(signal[:]); rerr != nil && !errors.Is(rerr, os.ErrDeadlineExceeded) {
					err = fmt.Errorf("netpoll: eventfd: %w", rerr)
				}
			}
			if err != nil {
				l.fail(err)
				return
			}
			l.ring.signalEventfd(false)
			l.idle.Store(false)
		case !l.ring.pending(): // let more gather
			now := time.Now()
			if wait := roundWait(now, l.round, reaped, period); wait >= minRoundWait {
				time.Sleep(wait)
			}
		}
		if l.commands() {
			return
		}
		l.bufs.publish()
		if err := l.enter(); err != nil {
			l.fail(err)
			return
		}
		if !l.ring.pending() {
			// Nothing submitted refers to these descriptors any more.
			for _, fd := range l.toClose {
				_ = unix.Close(fd)
			}
			l.toClose = l.toClose[:0]
		}
		reaped = l.ring.reap(l.complete)
		now := time.Now()
		last, period = now, now.Sub(last)
	}
}

// roundWait is how long a busy loop lets completions gather after a round
// that reaped some within since: until the next round on round's grid
// (see UntilRound), but at the rate just seen no longer than it takes
// roundFill completions to come. Beyond the loop's buffers the kernel
// stops receiving (ENOBUFS) until the loop gives buffers back.
func roundWait(now time.Time, round time.Duration, reaped int, since time.Duration) time.Duration {
	wait := UntilRound(now, round, 0)
	if reaped > 0 {
		wait = min(wait, since*roundFill/time.Duration(reaped))
	}
	return wait
}

// minRoundWait: a wait shorter than this is not worth the scheduler's
// handing the loop's thread away and back; the loop goes on at once.
const minRoundWait = 500 * time.Microsecond

// enter submits, and does all the receives' work (DEFER_TASKRUN) now:
// asked for no completions, the kernel would do only 20 items of it per
// call, and frames would queue up behind; asked for as many as the ring
// holds with a timeout of zero, it does all it has and returns.
func (l *uringLoop) enter() error {
	if l.ring.err != nil {
		return l.ring.err
	}
	err := l.ring.enter(uint32(len(l.ring.cqes)), 0, &l.noWait, false)
	if e := l.injected.Load(); e != nil {
		err = *e
	}
	switch err {
	case nil, unix.ETIME, unix.EINTR, unix.EBUSY:
		return nil
	default:
		return fmt.Errorf("netpoll: io_uring_enter: %w", err)
	}
}

// caughtUp reports whether an idle loop may wait for its eventfd: it
// does the work that came in while the eventfd was not signalled, and
// reports false if that completed something.
func (l *uringLoop) caughtUp() (bool, error) {
	if err := l.enter(); err != nil {
		return false, err
	}
	return !l.ring.completed(), nil
}

// fail stops a loop that cannot go on (its ring or eventfd failed): it
// takes no more commands, so the poller adds new connections elsewhere
// (see Poller.Add); the writes waiting get err; and every connection it
// held ends, its handler told with err. The loop's goroutine returns
// after, and teardown closes the sockets and the ring.
func (l *uringLoop) fail(err error) {
	l.mu.Lock()
	l.closing, l.err = true, err
	cmds := l.cmds
	l.cmds = nil
	l.mu.Unlock()
	for _, cmd := range cmds {
		switch {
		case cmd.kind == cmdAdd:
			l.conns[cmd.c.id] = cmd.c
		case cmd.send != nil:
			l.finish(cmd.c, cmd.send, err)
		}
	}
	for _, c := range l.conns {
		l.failSends(c, err)
		if c.out != nil { // a send under way: its waiter too
			for _, req := range c.out.inflight {
				l.finish(c, req, err)
			}
			c.out = nil
		}
		if !c.gone && !c.ended {
			c.ended = true
			c.r.ended(err)
		}
	}
}

// failed reports why the loop stopped by itself, nil if it did not.
func (l *uringLoop) failed() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// hasCommands reports whether commands wait; if none do, the loop is idle
// from now on, and a command wakes it.
func (l *uringLoop) hasCommands() bool {
	l.idle.Store(true)
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.cmds) > 0 || l.closing {
		l.idle.Store(false)
		return true
	}
	return false
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
			if c.sending() {
				l.cancelOp(c.id, tagSend)
			}
			l.failSends(c, ErrClosed)
			l.toClose = append(l.toClose, c.fd)
			if !c.armed && !c.sending() {
				delete(l.conns, c.id)
			}
		case cmdSend:
			switch {
			case c.gone:
				l.finish(c, cmd.send, ErrClosed)
			case c.sendErr != nil:
				l.finish(c, cmd.send, c.sendErr)
			default:
				if c.out == nil {
					c.out = &outbox{}
				}
				c.out.queue = append(c.out.queue, cmd.send)
				if !c.out.busy {
					l.submitSend(c)
				}
			}
		}
	}
	clear(cmds)
	return closing
}

// submitSend sends what is queued for c in one send, or the rest of what
// is in flight.
func (l *uringLoop) submitSend(c *uringConn) {
	o := c.out
	if len(o.inflight) == 0 { // and o.buf is nil
		o.inflight, o.queue, o.off = o.queue, nil, 0
		if len(o.inflight) == 1 {
			o.buf = o.inflight[0].b
		} else {
			for _, req := range o.inflight {
				o.buf = append(o.buf, req.b...)
			}
		}
	}
	b := o.buf[o.off:]
	e := l.ring.next()
	e.opcode = opSend
	e.fd = int32(c.fd)
	e.addr = uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
	e.len = uint32(len(b))
	e.opFlags = unix.MSG_NOSIGNAL
	e.userData = c.id<<2 | tagSend
	o.busy = true
}

// sent handles a send's completion.
func (l *uringLoop) sent(c *uringConn, res int32) {
	o := c.out
	o.busy = false
	switch {
	case c.gone:
		l.failSends(c, ErrClosed)
		if !c.armed {
			delete(l.conns, c.id)
		}
		return
	case res < 0:
		c.sendErr = fmt.Errorf("netpoll: send: %w", syscall.Errno(-res))
		l.failSends(c, c.sendErr)
		return
	}
	o.off += int(res)
	if o.off == len(o.buf) {
		for _, req := range o.inflight {
			l.finish(c, req, nil)
		}
		o.inflight, o.buf = nil, nil
	}
	if len(o.inflight) > 0 || len(o.queue) > 0 {
		l.submitSend(c)
	} else {
		c.out = nil
	}
}

// failSends ends everything queued for c with err, and what is in flight
// unless a send of it is under way (the kernel still has its bytes).
func (l *uringLoop) failSends(c *uringConn, err error) {
	o := c.out
	if o == nil {
		return
	}
	reqs := o.queue
	o.queue = nil
	if !o.busy {
		reqs = append(reqs, o.inflight...)
		c.out = nil
	}
	for _, req := range reqs {
		l.finish(c, req, err)
	}
}

func (l *uringLoop) finish(c *uringConn, req *sendReq, err error) {
	if req.done != nil {
		req.done <- err
	} else {
		c.queued.Add(-int64(len(req.b)))
	}
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
	l.cancelOp(c.id, tagRecv)
}

// cancelOp cancels connection id's receive or send.
func (l *uringLoop) cancelOp(id uint64, tag uint64) {
	e := l.ring.next()
	e.opcode = opAsyncCancel
	e.fd = -1
	e.addr = id<<2 | tag
	e.userData = id<<2 | tagCancel
}

// complete handles one completion.
func (l *uringLoop) complete(e cqe) {
	c := l.conns[e.userData>>2]
	switch e.userData & 3 {
	case tagCancel:
		return
	case tagSend:
		if c != nil {
			l.sent(c, e.res)
		}
		return
	}
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
		if !c.sending() {
			delete(l.conns, c.id)
		}
		return
	}
	var err error
	switch {
	case e.res == 0:
		err = io.EOF
	case e.res == -int32(unix.ENOBUFS):
		// The buffers are back by the next round, which reads on.
		l.outOfBuffers.Add(1)
		l.arm(c)
		return
	case e.res > 0, e.res == -int32(unix.ECANCELED), e.res == -int32(unix.EINTR):
		// Paused, or stopped for reasons of its own: read on if
		// wanted.
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

func (l *uringLoop) mode() Mode { return IOURing }
