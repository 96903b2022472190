package connlimit

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"
)

// server is a Limiter's listener on loopback, handing out what it accepts.
type server struct {
	lim      *Limiter
	addr     string
	accepted chan net.Conn

	mu      sync.Mutex
	refused []string
}

func startServer(t *testing.T, cfg Config) *server {
	t.Helper()
	s := &server{accepted: make(chan net.Conn, 100)}
	cfg.Refused = func(reason string) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.refused = append(s.refused, reason)
	}
	lim, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := lim.Listener(inner)
	t.Cleanup(func() { l.Close() })
	s.lim, s.addr = lim, inner.Addr().String()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			s.accepted <- c
		}
	}()
	return s
}

// dial connects from the loopback address src and reports whether the
// server kept the connection (it shows up accepted) or refused it (the
// client reads EOF at once).
func (s *server) dial(t *testing.T, src string) (kept net.Conn, ok bool) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", s.addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	t.Cleanup(func() { c.Close() })
	read := make(chan error, 1)
	go func() {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := c.Read(make([]byte, 1))
		read <- err
	}()
	select {
	case sc := <-s.accepted:
		return sc, true
	case err := <-read:
		if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("from %s: neither kept nor closed (%v)", src, err)
		}
		return nil, false
	}
}

// mustKeep dials from src and fails the test with why unless the server
// kept the connection, which it returns.
func (s *server) mustKeep(t *testing.T, src, why string) net.Conn {
	t.Helper()
	c, ok := s.dial(t, src)
	if !ok {
		t.Fatal(why)
	}
	return c
}

// mustRefuse dials from src and fails the test with why unless the
// server refused the connection.
func (s *server) mustRefuse(t *testing.T, src, why string) {
	t.Helper()
	if _, ok := s.dial(t, src); ok {
		t.Fatal(why)
	}
}

func (s *server) refusals() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.refused...)
}

func TestPerAddress(t *testing.T) {
	s := startServer(t, Config{Max: 100, MaxPerAddr: 3})
	var first net.Conn
	for i := range 3 {
		c := s.mustKeep(t, "127.0.0.1", fmt.Sprintf("connection %d from 127.0.0.1 refused under the limit", i+1))
		if i == 0 {
			first = c
		}
	}
	s.mustRefuse(t, "127.0.0.1", "a fourth connection from 127.0.0.1 was kept, limit 3")
	s.mustKeep(t, "127.0.0.2", "127.0.0.2 was refused for 127.0.0.1's connections")
	// Closing one gives its address the place back, once.
	first.Close()
	first.Close()
	s.mustKeep(t, "127.0.0.1", "127.0.0.1 refused after one of its connections closed")
	s.mustRefuse(t, "127.0.0.1", "a double close gave 127.0.0.1 two places back")
	if got := s.lim.Open(); got != 4 {
		t.Errorf("Open = %d, want 4", got)
	}
	if got := s.refusals(); len(got) != 2 || got[0] != "per_addr" || got[1] != "per_addr" {
		t.Errorf("refusals %q, want two per_addr", got)
	}
}

func TestInAll(t *testing.T) {
	s := startServer(t, Config{Max: 3, MaxPerAddr: 10})
	var kept []net.Conn
	for _, src := range []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"} {
		kept = append(kept, s.mustKeep(t, src, src+" refused under the limit"))
	}
	if err := s.lim.Ready(); !errors.Is(err, ErrFull) {
		t.Errorf("Ready at the limit: %v, want ErrFull", err)
	}
	s.mustRefuse(t, "127.0.0.4", "a fourth connection was kept, limit 3 in all")
	kept[0].Close()
	if err := s.lim.Ready(); err != nil {
		t.Errorf("Ready below the limit: %v", err)
	}
	s.mustKeep(t, "127.0.0.4", "refused after a connection closed")
	if got := s.refusals(); len(got) != 1 || got[0] != "full" {
		t.Errorf("refusals %q, want one full", got)
	}
}

func TestHeldCountsInAll(t *testing.T) {
	s := startServer(t, Config{Max: 3, MaxPerAddr: 10, Held: func() int { return 2 }})
	s.mustKeep(t, "127.0.0.1", "refused with 2 held of 3")
	s.mustRefuse(t, "127.0.0.2", "kept with 2 held and 1 open, limit 3")
	if got := s.lim.Open(); got != 3 {
		t.Errorf("Open = %d, want 3", got)
	}
}

func TestExemptPeers(t *testing.T) {
	proxy := netip.MustParseAddr("127.0.0.1")
	s := startServer(t, Config{Max: 100, MaxPerAddr: 1, Exempt: func(a netip.Addr) bool { return a == proxy }})
	for i := range 3 {
		s.mustKeep(t, "127.0.0.1", fmt.Sprintf("the exempt proxy's connection %d refused", i+1))
	}
	s.mustKeep(t, "127.0.0.2", "127.0.0.2's first connection refused")
	s.mustRefuse(t, "127.0.0.2", "127.0.0.2's second connection kept, limit 1")
}

// A kept TCP connection keeps what servers look for in a *net.TCPConn:
// a poller's SyscallConn, the HTTP server's CloseWrite and ReadFrom.
func TestKeptConnKeepsTCPMethods(t *testing.T) {
	s := startServer(t, Config{Max: 10, MaxPerAddr: 10})
	c := s.mustKeep(t, "127.0.0.1", "refused")
	if _, ok := c.(syscall.Conn); !ok {
		t.Error("not a syscall.Conn")
	}
	if _, ok := c.(interface{ CloseWrite() error }); !ok {
		t.Error("no CloseWrite")
	}
	if _, ok := c.(io.ReaderFrom); !ok {
		t.Error("not an io.ReaderFrom")
	}
}

func TestNewRefusesNoLimit(t *testing.T) {
	for _, cfg := range []Config{{Max: 0, MaxPerAddr: 1}, {Max: 1, MaxPerAddr: 0}, {Max: -1, MaxPerAddr: -1}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v): no error", cfg)
		}
	}
}
