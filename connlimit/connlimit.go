// Package connlimit bounds the connections a process's public listeners
// hold open: in all, below the process's open-file limit, and per client
// address. A connection costs a file descriptor from its accept on, long
// before a request on it can be judged: one that sends nothing is held
// until the server's header timeout. Without a bound one address could
// open connections until the process has no descriptor left, and then
// nobody else could connect; with it, a crowd of addresses meets a node
// that is full and says so (Ready), and one address meets its own limit.
//
// A connection over a limit is closed as soon as it is accepted, before
// anything is read from it, so a refusal costs no more than the accept.
package connlimit

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/pulse-analytics/pulse/clientaddr"
)

// Config is a Limiter's bounds.
type Config struct {
	// Max bounds the connections open at once, over every listener of
	// the Limiter and Held together.
	Max int
	// MaxPerAddr bounds the connections of one client address (IPv4, or
	// IPv6 by its /64, as clientaddr.KeyOf counts).
	MaxPerAddr int
	// Exempt reports peers that MaxPerAddr does not apply to: trusted
	// proxies, whose connections carry many clients (limited per client
	// by what serves the requests). Default: none.
	Exempt func(netip.Addr) bool
	// Held, if set, counts connections that left a listener's count while
	// their descriptors stay open: WebSockets whose descriptors a poller
	// took over (it closes the net.Conn it got, keeping a duplicate).
	// They count against Max, not MaxPerAddr: their server keeps its own
	// limit per address.
	Held func() int
	// Refused, if set, is told of each connection refused, with the
	// reason: "full" (Max) or "per_addr" (MaxPerAddr).
	Refused func(reason string)
}

// Limiter counts the connections of the listeners it wraps.
type Limiter struct {
	cfg Config

	mu      sync.Mutex
	open    int
	perAddr map[string]int
}

// New returns a Limiter of cfg's bounds; Max and MaxPerAddr must be
// positive.
func New(cfg Config) (*Limiter, error) {
	if cfg.Max <= 0 || cfg.MaxPerAddr <= 0 {
		return nil, fmt.Errorf("connlimit: limits must be positive, got %d in all and %d per address", cfg.Max, cfg.MaxPerAddr)
	}
	return &Limiter{cfg: cfg, perAddr: make(map[string]int)}, nil
}

// Listener wraps l: its connections are counted, and those over a bound
// are closed at once instead of returned.
func (lim *Limiter) Listener(l net.Listener) net.Listener { return &listener{Listener: l, lim: lim} }

// Open is the number of connections open: the listeners' and Held's.
func (lim *Limiter) Open() int {
	held := lim.held()
	lim.mu.Lock()
	defer lim.mu.Unlock()
	return lim.open + held
}

// held asks Held, outside mu: Held takes its owner's lock, and the owner
// may close connections (taking mu) while it holds that.
func (lim *Limiter) held() int {
	if lim.cfg.Held == nil {
		return 0
	}
	return lim.cfg.Held()
}

// ErrFull is what Ready reports while the process holds Max connections.
var ErrFull = errors.New("connlimit: at the connection limit")

// Ready reports whether a new connection can be taken: ErrFull (wrapped
// with the figures) while Max are open. It is for a readiness check, so
// that a load balancer sends new clients to another node.
func (lim *Limiter) Ready() error {
	if n := lim.Open(); n >= lim.cfg.Max {
		return fmt.Errorf("%w: %d connections open, limit %d", ErrFull, n, lim.cfg.Max)
	}
	return nil
}

// take counts in a connection from key; it reports the reason it is
// refused, or "".
func (lim *Limiter) take(key string, exempt bool) string {
	held := lim.held()
	lim.mu.Lock()
	defer lim.mu.Unlock()
	if lim.open+held >= lim.cfg.Max {
		return "full"
	}
	if !exempt && lim.perAddr[key] >= lim.cfg.MaxPerAddr {
		return "per_addr"
	}
	lim.open++
	if !exempt {
		lim.perAddr[key]++
	}
	return ""
}

func (lim *Limiter) release(key string, exempt bool) {
	lim.mu.Lock()
	defer lim.mu.Unlock()
	lim.open--
	if exempt {
		return
	}
	if lim.perAddr[key]--; lim.perAddr[key] <= 0 {
		delete(lim.perAddr, key)
	}
}

type listener struct {
	net.Listener
	lim *Limiter
}

// Accept returns the next connection within the bounds, closing those
// over them.
func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key, exempt := l.lim.keyOf(c.RemoteAddr())
		if reason := l.lim.take(key, exempt); reason != "" {
			if l.lim.cfg.Refused != nil {
				l.lim.cfg.Refused(reason)
			}
			_ = c.Close()
			continue
		}
		return l.wrap(c, key, exempt), nil
	}
}

// keyOf is the address a connection is counted by, and whether it is
// exempt from the limit per address. A peer that is not an IP address
// (a Unix socket) is counted as one address.
func (lim *Limiter) keyOf(a net.Addr) (key string, exempt bool) {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String(), false
	}
	ip := ta.AddrPort().Addr().Unmap()
	if lim.cfg.Exempt != nil && lim.cfg.Exempt(ip) {
		return "", true
	}
	return clientaddr.KeyOf(ip), false
}

// wrap counts c out when it is closed. A TCP connection stays a
// *net.TCPConn underneath, with its methods: the HTTP server's sendfile
// and CloseWrite, a poller's SyscallConn.
func (l *listener) wrap(c net.Conn, key string, exempt bool) net.Conn {
	s := &slot{lim: l.lim, key: key, exempt: exempt}
	if tc, ok := c.(*net.TCPConn); ok {
		return &tcpConn{TCPConn: tc, slot: s}
	}
	return &otherConn{Conn: c, slot: s}
}

// slot is a connection's place in the counts, given back once.
type slot struct {
	lim    *Limiter
	key    string
	exempt bool
	freed  atomic.Bool
}

func (s *slot) free() {
	if s.freed.CompareAndSwap(false, true) {
		s.lim.release(s.key, s.exempt)
	}
}

type tcpConn struct {
	*net.TCPConn
	slot *slot
}

func (c *tcpConn) Close() error {
	c.slot.free()
	return c.TCPConn.Close()
}

type otherConn struct {
	net.Conn
	slot *slot
}

func (c *otherConn) Close() error {
	c.slot.free()
	return c.Conn.Close()
}
