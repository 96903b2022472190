// Package netpoll calls a function with the bytes a connection received,
// reading a socket only when it is readable, into a buffer shared by all
// the connections of a poller. An idle connection then costs no goroutine
// and no buffer: on Linux pollers wait in epoll, the way servers that hold
// a million WebSockets do. Elsewhere, and for connections that are not
// sockets, each connection has a goroutine with a small buffer.
//
// Handlers run on the poller's goroutine: they must not block, and the
// bytes they get are only valid during the call.
package netpoll

import (
	"errors"
	"net"
	"runtime"
	"sync"
)

// Handler receives what one connection reads.
type Handler interface {
	// Data is called with the bytes read, valid during the call only.
	Data(b []byte)
	// Closed is called once when reading ends because the peer closed
	// (io.EOF) or the socket failed. It is not called after Remove.
	Closed(err error)
}

// ErrClosed is returned by Add after Close.
var ErrClosed = errors.New("netpoll: poller closed")

// Options configure a Poller.
type Options struct {
	// Loops is the number of epoll loops, each with its goroutine and
	// buffer. Default: GOMAXPROCS.
	Loops int
	// Goroutines makes every connection use the portable fallback, a
	// goroutine per connection; tests use it to check both.
	Goroutines bool
}

// Poller reads connections. Make one with New and stop it with Close.
type Poller struct {
	loops []*loop // nil without epoll
	next  int
	mu    sync.Mutex
}

// New starts a poller.
func New(opts Options) (*Poller, error) {
	p := &Poller{}
	if opts.Goroutines || !epollSupported {
		return p, nil
	}
	n := opts.Loops
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	for range n {
		l, err := newLoop()
		if err != nil {
			p.Close()
			return nil, err
		}
		p.loops = append(p.loops, l)
	}
	return p, nil
}

// Registration is one connection in a poller.
type Registration struct {
	mu      sync.Mutex
	removed bool
	paused  bool
	impl    registration
}

// registration is a Registration's implementation: epoll or goroutine.
type registration interface {
	remove()
	setPaused(bool)
}

// Add starts reading c and calling h with what it reads, until c closes or
// Remove is called.
func (p *Poller) Add(c net.Conn, h Handler) (*Registration, error) {
	r := &Registration{}
	p.mu.Lock()
	var l *loop
	if len(p.loops) > 0 {
		l = p.loops[p.next%len(p.loops)]
		p.next++
	}
	p.mu.Unlock()
	if l != nil {
		ok, err := l.add(c, h, r)
		if err != nil {
			return nil, err
		}
		if ok {
			return r, nil
		}
	}
	r.impl = startReader(c, h, r)
	return r, nil
}

// Remove stops reading; the connection is the caller's to close. After
// Remove returns, the handler is not called again, except that a Data call
// already under way may finish. Remove may be called more than once.
func (r *Registration) Remove() { r.remove() }

// remove removes and reports whether this call did.
func (r *Registration) remove() bool {
	r.mu.Lock()
	if r.removed {
		r.mu.Unlock()
		return false
	}
	r.removed = true
	r.mu.Unlock()
	r.impl.remove()
	return true
}

// closed ends reading because of err and tells the handler, unless Remove
// came first.
func (r *Registration) closed(h Handler, err error) {
	if r.remove() {
		h.Closed(err)
	}
}

// Pause stops reading until Resume, so that TCP pushes back on a peer that
// sends faster than its data can be handled.
func (r *Registration) Pause() { r.setPaused(true) }

// Resume reads again after Pause.
func (r *Registration) Resume() { r.setPaused(false) }

func (r *Registration) setPaused(paused bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.removed || r.paused == paused {
		return
	}
	r.paused = paused
	r.impl.setPaused(paused)
}

// isRemoved reports whether Remove was called.
func (r *Registration) isRemoved() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.removed
}

// Close stops the epoll loops. Connections still registered are neither
// read nor closed any more.
func (p *Poller) Close() {
	for _, l := range p.loops {
		l.close()
	}
}

// goroutineReader is the portable fallback: a goroutine blocked in Read.
type goroutineReader struct {
	conn   net.Conn
	mu     sync.Mutex
	resume *sync.Cond
	paused bool
	done   bool
}

// fallbackBufferSize is the fallback's buffer per connection.
const fallbackBufferSize = 4 << 10

func startReader(c net.Conn, h Handler, r *Registration) *goroutineReader {
	g := &goroutineReader{conn: c}
	g.resume = sync.NewCond(&g.mu)
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
			g.mu.Unlock()
			if r.isRemoved() {
				return
			}
			if n > 0 {
				h.Data(buf[:n])
			}
			if err != nil {
				r.closed(h, err)
				return
			}
		}
	}()
	return g
}

func (g *goroutineReader) remove() {
	g.mu.Lock()
	g.done = true
	g.mu.Unlock()
	g.resume.Broadcast()
}

func (g *goroutineReader) setPaused(paused bool) {
	g.mu.Lock()
	g.paused = paused
	g.mu.Unlock()
	g.resume.Broadcast()
}
