//go:build linux && (amd64 || arm64)

package netpoll

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The io_uring ABI, from include/uapi/linux/io_uring.h: the few operations
// and flags the loops use.
const (
	opRead        = 22
	opAsyncCancel = 14
	opSend        = 26
	opRecv        = 27

	sqeBufferSelect = 1 << 5
	recvMultishot   = 1 << 1 // in sqe.ioprio of a recv

	cqeFBuffer     = 1 << 0
	cqeFMore       = 1 << 1
	cqeBufferShift = 16

	cqEventfdDisabled = 1 << 0 // in the completion queue's flags

	setupCQSize       = 1 << 3
	setupSubmitAll    = 1 << 7
	setupCoopTaskrun  = 1 << 8
	setupSingleIssuer = 1 << 12
	setupDeferTaskrun = 1 << 13

	enterGetEvents = 1 << 0
	enterExtArg    = 1 << 3

	featSingleMmap = 1 << 0
	featNoDrop     = 1 << 1
	featExtArg     = 1 << 8

	registerEventfd  = 4
	registerPbufRing = 22

	offSQRing = 0
	offCQRing = 0x8000000
	offSQEs   = 0x10000000
)

type uringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqRingOffsets
	cqOff                                                                  cqRingOffsets
}

// sqRingOffsets is struct io_sqring_offsets.
type sqRingOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

// cqRingOffsets is struct io_cqring_offsets.
type cqRingOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

// sqe is struct io_uring_sqe (64 bytes).
type sqe struct {
	opcode      uint8
	flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64
	addr        uint64
	len         uint32
	opFlags     uint32
	userData    uint64
	bufGroup    uint16
	personality uint16
	spliceFdIn  int32
	addr3       uint64
	_           uint64
}

// cqe is struct io_uring_cqe (16 bytes).
type cqe struct {
	userData uint64
	res      int32
	flags    uint32
}

// getEventsArg is struct io_uring_getevents_arg.
type getEventsArg struct {
	sigmask     uint64
	sigmaskSz   uint32
	minWaitUsec uint32
	ts          uint64
}

// bufReg is struct io_uring_buf_reg.
type bufReg struct {
	ringAddr    uint64
	ringEntries uint32
	bgid        uint16
	flags       uint16
	resv        [3]uint64
}

// ring is an io_uring instance: its submission and completion queues
// mapped into memory. It is used by one goroutine.
type ring struct {
	fd                   int
	sqMem, cqMem, sqeMem []byte
	sqHead, sqTail       *uint32
	sqMask, sqEntries    uint32
	sqArray              []uint32
	sqes                 []sqe
	cqHead, cqTail       *uint32
	cqMask               uint32
	cqes                 []cqe
	cqFlags              *uint32 // nil where the kernel has none
	tail                 uint32  // the next submission entry to fill
	// err, once set, says the submission queue was full and could not
	// be submitted: the ring is broken, and its owner stops using it.
	// Entries asked for after that are discard, never submitted.
	err     error
	discard sqe
}

// newRing sets up a ring with the first of flagSets the kernel accepts.
func newRing(entries, cqEntries uint32, flagSets ...uint32) (*ring, error) {
	var p uringParams
	var fd uintptr
	var errno unix.Errno
	for _, flags := range flagSets {
		p = uringParams{flags: flags | setupCQSize, cqEntries: cqEntries}
		fd, _, errno = unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
		if errno != unix.EINVAL {
			break
		}
	}
	switch {
	case errno == unix.ENOSYS || errno == unix.EPERM || errno == unix.EINVAL:
		return nil, fmt.Errorf("%w: io_uring_setup: %v", errUnsupported, errno)
	case errno != 0:
		return nil, fmt.Errorf("netpoll: io_uring_setup: %w", errno)
	}
	r := &ring{fd: int(fd)}
	if p.features&(featSingleMmap|featNoDrop|featExtArg) != featSingleMmap|featNoDrop|featExtArg {
		r.close()
		return nil, fmt.Errorf("%w: io_uring features %#x", errUnsupported, p.features)
	}
	size := max(p.sqOff.array+p.sqEntries*4, p.cqOff.cqes+p.cqEntries*uint32(unsafe.Sizeof(cqe{})))
	var err error
	if r.sqMem, err = unix.Mmap(r.fd, offSQRing, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		r.close()
		return nil, fmt.Errorf("netpoll: mmap io_uring: %w", err)
	}
	r.cqMem = r.sqMem
	if r.sqeMem, err = unix.Mmap(r.fd, offSQEs, int(p.sqEntries)*int(unsafe.Sizeof(sqe{})), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		r.close()
		return nil, fmt.Errorf("netpoll: mmap io_uring entries: %w", err)
	}
	u32 := func(mem []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&mem[off])) }
	r.sqHead, r.sqTail = u32(r.sqMem, p.sqOff.head), u32(r.sqMem, p.sqOff.tail)
	r.sqMask, r.sqEntries = *u32(r.sqMem, p.sqOff.ringMask), p.sqEntries
	r.sqArray = unsafe.Slice(u32(r.sqMem, p.sqOff.array), p.sqEntries)
	r.sqes = unsafe.Slice((*sqe)(unsafe.Pointer(&r.sqeMem[0])), p.sqEntries)
	r.cqHead, r.cqTail = u32(r.cqMem, p.cqOff.head), u32(r.cqMem, p.cqOff.tail)
	r.cqMask = *u32(r.cqMem, p.cqOff.ringMask)
	r.cqes = unsafe.Slice((*cqe)(unsafe.Pointer(&r.cqMem[p.cqOff.cqes])), p.cqEntries)
	if p.cqOff.flags != 0 { // Linux 5.8
		r.cqFlags = u32(r.cqMem, p.cqOff.flags)
	}
	r.tail = atomic.LoadUint32(r.sqTail)
	return r, nil
}

// next returns a cleared submission entry to fill; it is submitted by the
// next enter. A full queue is submitted first; if that fails, r.err says
// why and the entry returned is one that is never submitted.
func (r *ring) next() *sqe {
	for r.err == nil && r.tail-atomic.LoadUint32(r.sqHead) >= r.sqEntries {
		if err := r.enter(0, 0, nil, false); err != nil && err != unix.EINTR && err != unix.EBUSY {
			r.err = fmt.Errorf("netpoll: io_uring submission queue full and not submitted: %w", err)
		}
	}
	if r.err != nil {
		r.discard = sqe{}
		return &r.discard
	}
	i := r.tail & r.sqMask
	e := &r.sqes[i]
	*e = sqe{}
	r.sqArray[i] = i
	r.tail++
	return e
}

// enter submits what was queued and, with minComplete > 0 or GETEVENTS in
// flags, runs completions and waits for minComplete of them (bounded by
// arg's timeout, if any). mayWait says whether the call can block: one that
// cannot (no completions asked for, or a timeout of zero) is made as a raw
// system call.
func (r *ring) enter(minComplete, flags uint32, arg *getEventsArg, mayWait bool) error {
	atomic.StoreUint32(r.sqTail, r.tail)
	toSubmit := r.tail - atomic.LoadUint32(r.sqHead)
	if minComplete > 0 {
		flags |= enterGetEvents
	}
	var argp, argSize uintptr
	if arg != nil {
		flags |= enterExtArg
		argp, argSize = uintptr(unsafe.Pointer(arg)), unsafe.Sizeof(*arg)
	}
	call := unix.Syscall6
	if !mayWait {
		// To the Go scheduler this is work on the loop's processor, not
		// a system call it should take the processor away from (which,
		// for a call doing many receives or sends, it did, and kept its
		// monitor waking every 20 µs).
		call = unix.RawSyscall6
	}
	_, _, errno := call(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit), uintptr(minComplete), uintptr(flags), argp, argSize)
	if errno != 0 {
		return errno
	}
	return nil
}

// pending reports whether queued entries wait for submission.
func (r *ring) pending() bool { return r.tail != atomic.LoadUint32(r.sqHead) }

// signalEventfd turns the registered eventfd's signals on or off. Off,
// the kernel does not write it for completions or for receive work it
// leaves to the next enter; a loop that is going to enter anyway has no
// use for them, and each would wake a thread of Go's poller for nothing.
func (r *ring) signalEventfd(on bool) {
	if r.cqFlags == nil {
		return
	}
	flags := atomic.LoadUint32(r.cqFlags)
	if on {
		flags &^= cqEventfdDisabled
	} else {
		flags |= cqEventfdDisabled
	}
	atomic.StoreUint32(r.cqFlags, flags)
}

// completed reports whether completions wait to be reaped.
func (r *ring) completed() bool { return atomic.LoadUint32(r.cqHead) != atomic.LoadUint32(r.cqTail) }

// reap calls f with each completion and frees their slots.
func (r *ring) reap(f func(c cqe)) int {
	head := atomic.LoadUint32(r.cqHead)
	tail := atomic.LoadUint32(r.cqTail)
	n := 0
	for ; head != tail; head++ {
		f(r.cqes[head&r.cqMask])
		n++
	}
	atomic.StoreUint32(r.cqHead, head)
	return n
}

func (r *ring) close() {
	if r.sqeMem != nil {
		_ = unix.Munmap(r.sqeMem)
	}
	if r.sqMem != nil {
		_ = unix.Munmap(r.sqMem)
	}
	_ = unix.Close(r.fd)
}

// bufRing is a ring of provided buffers: a multishot receive takes the
// next free buffer for each completion, and the loop gives it back once
// the handler has seen it.
type bufRing struct {
	mem     []byte // the ring of buffer descriptors
	data    []byte // the buffers
	entries []ringBuf
	size    int
	mask    uint16
	tail    uint16
	// bid0 is the buffer id of entries[0], whose last two bytes are the
	// ring's tail: publish writes both in one atomic store.
	bid0 uint16
}

// ringBuf is struct io_uring_buf.
type ringBuf struct {
	addr uint64
	len  uint32
	bid  uint16
	resv uint16
}

// newBufRing registers count buffers of size bytes as group 0 of r.
func newBufRing(r *ring, count, size int) (*bufRing, error) {
	b := &bufRing{size: size, mask: uint16(count - 1)}
	var err error
	if b.mem, err = unix.Mmap(-1, 0, count*int(unsafe.Sizeof(ringBuf{})), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE); err != nil {
		return nil, fmt.Errorf("netpoll: mmap buffer ring: %w", err)
	}
	if b.data, err = unix.Mmap(-1, 0, count*size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS); err != nil {
		b.free()
		return nil, fmt.Errorf("netpoll: mmap buffers: %w", err)
	}
	b.entries = unsafe.Slice((*ringBuf)(unsafe.Pointer(&b.mem[0])), count)
	reg := bufReg{ringAddr: uint64(uintptr(unsafe.Pointer(&b.mem[0]))), ringEntries: uint32(count)}
	_, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), registerPbufRing, uintptr(unsafe.Pointer(&reg)), 1, 0, 0)
	if errno != 0 {
		b.free()
		return nil, fmt.Errorf("%w: register buffer ring: %v", errUnsupported, errno)
	}
	for i := range count {
		b.put(uint16(i))
	}
	b.publish()
	return b, nil
}

// buf returns buffer bid's first n bytes.
func (b *bufRing) buf(bid uint16, n int) []byte {
	off := int(bid) * b.size
	return b.data[off : off+n : off+n]
}

// put gives buffer bid back; publish makes it usable.
func (b *bufRing) put(bid uint16) {
	i := b.tail & b.mask
	e := &b.entries[i]
	e.addr = uint64(uintptr(unsafe.Pointer(&b.data[int(bid)*b.size])))
	e.len = uint32(b.size)
	if i == 0 {
		b.bid0 = bid
	} else {
		e.bid = bid
	}
	b.tail++
}

// publish hands the buffers put back to the kernel. The tail is the u16 in
// the last two bytes of entries[0]; it is stored together with that
// entry's bid (little-endian: bid low, tail high) so that the store is
// atomic and the kernel sees the new entries before the new tail.
func (b *bufRing) publish() {
	atomic.StoreUint32((*uint32)(unsafe.Pointer(&b.entries[0].bid)), uint32(b.bid0)|uint32(b.tail)<<16)
}

func (b *bufRing) free() {
	if b.mem != nil {
		_ = unix.Munmap(b.mem)
	}
	if b.data != nil {
		_ = unix.Munmap(b.data)
	}
}
