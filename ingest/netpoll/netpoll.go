// Package netpoll owns server connections that are read only when bytes
// arrive, into buffers shared by all the connections of a poller, so that
// an idle connection costs no goroutine and no buffer, the way servers
// that hold a million WebSockets do it.
//
// On Linux a poller uses io_uring: each loop keeps a multishot receive
// armed on every socket, with a ring of shared buffers, and one system call
// collects whatever all of its sockets received (a read per frame cost
// more than everything else a frame needs). Where io_uring is missing or
// forbidden it uses epoll; elsewhere, and for connections that are not
// sockets, each connection has a goroutine with a small buffer.
//
// Handlers run on a loop's goroutine: they must not block for long, and
// the bytes they get are only valid during the call.
package netpoll

import (
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Handler receives what one connection reads.
type Handler interface {
	// Data is called with the bytes read, valid during the call only.
	Data(b []byte)
	// Closed is called once when reading ends because the peer closed
	// (io.EOF) or the socket failed. It is not called after Close or
	// Linger.
	Closed(err error)
}

// ErrClosed is returned by Add after the poller's Close, and by Write
// after the connection's Close.
var ErrClosed = errors.New("netpoll: closed")

// ErrWriteTimeout is returned by a Write that could not finish in time.
var ErrWriteTimeout = errors.New("netpoll: write timed out")

// Mode is how a poller waits for sockets.
type Mode string

// The modes, best first.
const (
	IOURing    Mode = "io_uring"
	Epoll      Mode = "epoll"
	Goroutines Mode = "goroutines"
)

// Options configure a Poller.
type Options struct {
	// Loops is the number of loops, each with its goroutine and buffers.
	// Default: DefaultLoops.
	Loops int
	// Round is the longest a busy io_uring loop lets completions gather
	// before its next round (a round costs a system call and the Go
	// scheduler's handing the loop's thread a processor). Those waits end
	// on multiples of Round since the Unix epoch (see UntilRound), so that
	// what consumes the handlers' work can follow right after. A loop
	// that reads much waits less, so that its buffers do not run out.
	// Default 10 ms; at most MaxRound, since commands to a busy loop
	// (sends, closes) wait for its next round.
	Round time.Duration
	// Mode asks for a mode; the default is the best this system allows.
	// Asking for io_uring or epoll where it is not available falls back
	// to the next one; Mode tells which was used. Tests use it to check
	// every mode.
	Mode Mode
}

// Poller reads connections. Make one with New and stop it with Close.
type Poller struct {
	mode  Mode
	loops []loop // empty in goroutine mode
	next  int
	round time.Duration // the loops'
	// failures counts loops that stopped by themselves.
	failures int
	mu       sync.Mutex
	regs     map[*Registration]struct{}
	done     bool
}

// loop is one io_uring or epoll loop.
type loop interface {
	// add starts reading c for r; ok is false if c is not a socket the
	// loop can wait on. After the loop failed it returns errLoopFailed,
	// and leaves c as it was.
	add(c net.Conn, r *Registration) (ok bool, err error)
	// failed reports why the loop stopped by itself (its ring failed),
	// nil while it runs.
	failed() error
	mode() Mode
	close()
}

// errLoopFailed is returned by a loop's add after it stopped by itself.
var errLoopFailed = errors.New("netpoll: the loop has failed")

// New starts a poller.
func New(opts Options) (*Poller, error) {
	switch opts.Mode {
	case "", IOURing, Epoll, Goroutines:
	default:
		return nil, fmt.Errorf("netpoll: unknown mode %q: want %s, %s or %s", opts.Mode, IOURing, Epoll, Goroutines)
	}
	p := &Poller{mode: Goroutines, regs: make(map[*Registration]struct{})}
	n := opts.Loops
	if n <= 0 {
		n = DefaultLoops()
	}
	if opts.Round <= 0 {
		opts.Round = 10 * time.Millisecond
	}
	opts.Round = min(opts.Round, MaxRound)
	p.round = opts.Round
	for _, mode := range []Mode{IOURing, Epoll} {
		if opts.Mode == Goroutines || (opts.Mode == Epoll && mode == IOURing) {
			continue
		}
		loops, err := startLoops(mode, n, opts.Round)
		if err == nil {
			p.mode, p.loops = mode, loops
			break
		}
		if !errors.Is(err, errUnsupported) {
			return nil, err
		}
	}
	return p, nil
}

// errUnsupported says a mode is not available here.
var errUnsupported = errors.New("netpoll: not supported here")

func startLoops(mode Mode, n int, round time.Duration) ([]loop, error) {
	var loops []loop
	for range n {
		var l loop
		var err error
		if mode == IOURing {
			l, err = newUringLoop(round)
		} else {
			l, err = newEpollLoop()
		}
		if err != nil {
			for _, l := range loops {
				l.close()
			}
			return nil, err
		}
		loops = append(loops, l)
	}
	return loops, nil
}

// DefaultLoops is half of GOMAXPROCS, at least one. A loop's work per
// frame is small next to what consumes the handlers' work (for ingest:
// storing and counting the events), which the other processors are left
// for, and fewer loops find more in each round. On two cores one loop
// used 10-20 % less CPU than two with 1,000 batched trackers, and as much
// with classic ones, and took 77,000 classic frames a second as well
// (bench/run.sh paced and sweep).
func DefaultLoops() int { return max(1, runtime.GOMAXPROCS(0)/2) }

// MaxRound is the longest Options.Round: a longer round would keep sends
// and closes waiting for it.
const MaxRound = 100 * time.Millisecond

// UntilRound returns how long it is from now until the next instant that
// lies offset past a multiple of round since the Unix epoch: io_uring
// loops start their rounds at offset 0, and something that consumes what
// their handlers produce can wake a little later and find it all.
func UntilRound(now time.Time, round, offset time.Duration) time.Duration {
	d := (int64(offset) - now.UnixNano()) % int64(round)
	if d <= 0 {
		d += int64(round)
	}
	return time.Duration(d)
}

// Mode is the mode the poller uses for new connections (Epoll once every
// io_uring loop has failed and been replaced).
func (p *Poller) Mode() Mode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode
}

// Registration is one connection in a poller.
type Registration struct {
	p  *Poller
	h  Handler
	mu sync.Mutex
	// closed: Close or Linger was called, or reading ended; nothing is
	// handed to the handler any more. Set under mu; data reads it for
	// every frame without taking mu.
	closed    atomic.Bool
	lingering bool
	paused    bool
	impl      conn
}

// conn is a Registration's connection in one of the modes. Writes are
// made one at a time by the Registration's user; the other methods may
// come from any goroutine.
type conn interface {
	write(b []byte, timeout time.Duration) error
	// send queues b without waiting; false if it cannot.
	send(b []byte) bool
	setPaused(bool)
	// closeWrite shuts down the writing side: the peer reads EOF.
	closeWrite()
	// close stops reading and closes the socket.
	close()
}

// Add starts reading c and calling h with what it reads. The poller owns
// c from then on: use the Registration to write and to close. A loop that
// failed (its connections ended with the error) takes no more: its place
// goes to an epoll loop.
func (p *Poller) Add(c net.Conn, h Handler) (*Registration, error) {
	r := &Registration{p: p, h: h}
	p.mu.Lock()
	if p.done {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	p.regs[r] = struct{}{}
	p.mu.Unlock()
	for {
		p.mu.Lock()
		var l loop
		if len(p.loops) > 0 {
			l = p.loops[p.next%len(p.loops)]
			p.next++
		}
		p.mu.Unlock()
		if l == nil {
			break
		}
		ok, err := l.add(c, r)
		if errors.Is(err, errLoopFailed) {
			if err := p.replace(l); err != nil {
				p.forget(r)
				return nil, err
			}
			continue
		}
		if err != nil {
			p.forget(r)
			return nil, err
		}
		if ok {
			return r, nil
		}
		break
	}
	startReader(c, r)
	return r, nil
}

// replace puts an epoll loop where the failed loop l was.
func (p *Poller) replace(l loop) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := slices.Index(p.loops, l)
	if i < 0 {
		return nil // replaced already
	}
	loops, err := startLoops(Epoll, 1, p.round)
	if err != nil {
		// No epoll either: the rest read with goroutines.
		p.loops = slices.Delete(p.loops, i, i+1)
	} else {
		p.loops[i] = loops[0]
	}
	p.failures++
	p.mode = Goroutines
	for _, other := range p.loops {
		if m := other.mode(); p.mode != IOURing {
			p.mode = m // io_uring while any io_uring loop runs
		}
	}
	go l.close()
	return nil
}

// Failures is how many loops stopped by themselves and were replaced.
func (p *Poller) Failures() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failures
}

func (p *Poller) forget(r *Registration) {
	p.mu.Lock()
	delete(p.regs, r)
	p.mu.Unlock()
}

// data hands what was read to the handler, unless the connection is
// closing.
func (r *Registration) data(b []byte) {
	if !r.closed.Load() {
		r.h.Data(b)
	}
}

// ended is called by the implementation when reading ended with err: it
// tells the handler, unless Close or Linger came first, in which case a
// lingering connection is closed now.
func (r *Registration) ended(err error) {
	r.mu.Lock()
	tell, finish := !r.closed.Load(), r.lingering
	r.closed.Store(true)
	r.mu.Unlock()
	if finish {
		r.Close()
	}
	if tell {
		r.h.Closed(err)
	}
}

// Write writes b within timeout. Only one Write may be under way at a
// time.
func (r *Registration) Write(b []byte, timeout time.Duration) error {
	r.mu.Lock()
	impl := r.impl
	r.mu.Unlock()
	return impl.write(b, timeout)
}

// Send queues b to be written after what earlier Writes and Sends
// queued, without waiting: the loop sends it in its next round, with one
// system call for all its connections. It reports false when the mode
// cannot (only io_uring can) or too much is queued already; then use
// Write. Whether it reaches the peer is not reported: a connection whose
// sends fail fails its reads too. The poller keeps b until it is sent.
func (r *Registration) Send(b []byte) bool {
	r.mu.Lock()
	impl := r.impl
	r.mu.Unlock()
	return impl.send(b)
}

// maxQueuedSend bounds the bytes Send may queue for one connection, so a
// peer that does not read cannot make the loop hold its acks for ever.
const maxQueuedSend = 64 << 10

// Pause stops reading until Resume, so that TCP pushes back on a peer that
// sends faster than its data can be handled.
func (r *Registration) Pause() { r.setPaused(true) }

// Resume reads again after Pause.
func (r *Registration) Resume() { r.setPaused(false) }

func (r *Registration) setPaused(paused bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed.Load() || r.paused == paused {
		return
	}
	r.paused = paused
	r.impl.setPaused(paused)
}

// Close stops reading and closes the connection. After Close returns the
// handler is not called again, except that a Data call already under way
// may finish. Close may be called more than once.
func (r *Registration) Close() {
	r.mu.Lock()
	r.closed.Store(true)
	r.lingering = false
	impl := r.impl
	r.mu.Unlock()
	if impl != nil && r.p.forgetOnce(r) {
		impl.close()
	}
}

// forgetOnce forgets r and reports whether it was still known.
func (p *Poller) forgetOnce(r *Registration) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.regs[r]
	delete(p.regs, r)
	return ok
}

// Linger closes the connection without losing what was written: closing a
// socket with unread bytes makes the kernel send a reset, which can reach
// the peer before the last frames and hide them. So the writing side is
// shut (the peer reads EOF after the last byte), what the peer still
// sends is read and dropped until it closes too or wait passes, and only
// then is the socket closed. The handler is not called again.
func (r *Registration) Linger(wait time.Duration) {
	r.mu.Lock()
	if r.closed.Load() {
		r.mu.Unlock()
		r.Close()
		return
	}
	r.closed.Store(true)
	r.lingering = true
	paused := r.paused
	r.paused = false
	impl := r.impl
	r.mu.Unlock()
	impl.closeWrite()
	if paused {
		impl.setPaused(false)
	}
	time.AfterFunc(wait, r.Close)
}

// Close stops the loops and closes the connections still registered.
func (p *Poller) Close() {
	p.mu.Lock()
	p.done = true
	regs := make([]*Registration, 0, len(p.regs))
	for r := range p.regs {
		regs = append(regs, r)
	}
	p.mu.Unlock()
	for _, r := range regs {
		r.Close()
	}
	for _, l := range p.loops {
		l.close()
	}
}

// netConn is a connection read by a goroutine or by epoll, and written
// and closed through net.Conn.
type netConn struct{ c net.Conn }

func (n netConn) write(b []byte, timeout time.Duration) error {
	_ = n.c.SetWriteDeadline(time.Now().Add(timeout))
	_, err := n.c.Write(b)
	if errors.Is(err, net.ErrClosed) {
		return ErrClosed
	}
	return err
}

func (netConn) send([]byte) bool { return false }

func (n netConn) closeWrite() {
	if cw, ok := n.c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	_ = n.c.Close()
}

// goroutineReader is the portable fallback: a goroutine blocked in Read.
type goroutineReader struct {
	netConn
	mu     sync.Mutex
	resume *sync.Cond
	paused bool
	done   bool
}

// fallbackBufferSize is the fallback's buffer per connection.
const fallbackBufferSize = 4 << 10

func startReader(c net.Conn, r *Registration) {
	g := &goroutineReader{netConn: netConn{c}}
	g.resume = sync.NewCond(&g.mu)
	r.mu.Lock()
	r.impl = g
	r.mu.Unlock()
	go func() {
		buf := make([]byte, fallbackBufferSize)
		for {
			n, err := c.Read(buf)
			// A Read is always under way here; what it got while paused
			// waits for Resume.
			g.mu.Lock()
			for g.paused && !g.done {
				g.resume.Wait()
			}
			done := g.done
			g.mu.Unlock()
			if n > 0 && !done {
				r.data(buf[:n])
			}
			if err != nil {
				if done {
					err = io.EOF
				}
				r.ended(err)
				return
			}
		}
	}()
}

func (g *goroutineReader) close() {
	g.mu.Lock()
	g.done = true
	g.mu.Unlock()
	g.resume.Broadcast()
	_ = g.c.Close()
}

func (g *goroutineReader) setPaused(paused bool) {
	g.mu.Lock()
	g.paused = paused
	g.mu.Unlock()
	g.resume.Broadcast()
}
