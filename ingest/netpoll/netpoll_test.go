package netpoll

import (
	"bytes"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// recorder is a Handler that keeps what it got.
type recorder struct {
	mu     sync.Mutex
	data   bytes.Buffer
	closed chan error
}

func newRecorder() *recorder { return &recorder{closed: make(chan error, 1)} }

func (r *recorder) Data(b []byte) {
	r.mu.Lock()
	r.data.Write(b)
	r.mu.Unlock()
}

func (r *recorder) Closed(err error) { r.closed <- err }

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.data.Len()
}

func (r *recorder) waitLen(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for r.len() < n {
		if time.Now().After(deadline) {
			t.Fatalf("got %d bytes, want %d", r.len(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// silentAfter checks that after call the handler still has n bytes and
// got no Closed call.
func (r *recorder) silentAfter(t *testing.T, n int, call string) {
	t.Helper()
	if r.len() != n {
		t.Errorf("handler got %q after %s", r.data.String(), call)
	}
	select {
	case err := <-r.closed:
		t.Errorf("Closed(%v) after %s", err, call)
	default:
	}
}

// pair returns the two ends of a loopback TCP connection.
func pair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// added returns a connection's client end, and its server end added to p
// with a recorder.
func added(t *testing.T, p *Poller) (net.Conn, *recorder, *Registration) {
	t.Helper()
	client, server := pair(t)
	rec := newRecorder()
	reg, err := p.Add(server, rec)
	if err != nil {
		t.Fatal(err)
	}
	return client, rec, reg
}

// modes runs test with a poller in each mode this system has.
func modes(t *testing.T, test func(t *testing.T, p *Poller)) {
	for _, mode := range []Mode{IOURing, Epoll, Goroutines} {
		t.Run(string(mode), func(t *testing.T) {
			p, err := New(Options{Loops: 2, Mode: mode})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(p.Close)
			if p.Mode() != mode {
				if runtime.GOOS == "linux" && mode != Goroutines {
					t.Fatalf("asked for %s, got %s", mode, p.Mode())
				}
				t.Skipf("%s is not available here", mode)
			}
			test(t, p)
		})
	}
}

func TestReadsUntilClose(t *testing.T) {
	modes(t, func(t *testing.T, p *Poller) {
		var want bytes.Buffer
		recs := make([]*recorder, 20)
		clients := make([]net.Conn, len(recs))
		for i := range recs {
			var server net.Conn
			clients[i], server = pair(t)
			recs[i] = newRecorder()
			if _, err := p.Add(server, recs[i]); err != nil {
				t.Fatal(err)
			}
		}
		// More than one read buffer's worth, in pieces.
		chunk := bytes.Repeat([]byte("0123456789abcdef"), 1000)
		for range 10 {
			want.Write(chunk)
		}
		for i, c := range clients {
			go func() {
				for range 10 {
					_, _ = c.Write(chunk)
				}
				c.Close()
			}()
			select {
			case err := <-recs[i].closed:
				if !errors.Is(err, io.EOF) {
					t.Errorf("conn %d closed with %v, want EOF", i, err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("conn %d: no close", i)
			}
			if !bytes.Equal(recs[i].data.Bytes(), want.Bytes()) {
				t.Errorf("conn %d: got %d bytes, want %d", i, recs[i].len(), want.Len())
			}
		}
	})
}

// TestReadsAfterIdle: bytes that arrive at an idle loop wake it, however
// often it goes from busy to idle and back (io_uring turns the eventfd's
// signals off while busy and on again when idle).
func TestReadsAfterIdle(t *testing.T) {
	modes(t, func(t *testing.T, p *Poller) {
		client, rec, _ := added(t, p)
		for i := 1; i <= 20; i++ {
			if _, err := client.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			rec.waitLen(t, i)
			// Idle for longer than a busy loop's 10 ms pause, or
			// not at all.
			time.Sleep(time.Duration(i%3) * 20 * time.Millisecond)
		}
	})
}

func TestCloseAndPause(t *testing.T) {
	modes(t, func(t *testing.T, p *Poller) {
		client, rec, reg := added(t, p)
		_, _ = client.Write([]byte("one"))
		rec.waitLen(t, 3)

		reg.Pause()
		time.Sleep(50 * time.Millisecond) // a read already under way may finish
		_, _ = client.Write([]byte("two"))
		time.Sleep(100 * time.Millisecond)
		if n := rec.len(); n != 3 {
			t.Fatalf("read %d bytes while paused", n-3)
		}
		reg.Resume()
		rec.waitLen(t, 6)

		reg.Close()
		reg.Close() // idempotent
		_, _ = client.Write([]byte("three"))
		time.Sleep(100 * time.Millisecond)
		rec.silentAfter(t, 6, "Close")
		// The socket is closed: the client reads EOF, or a reset when
		// "three" arrived before the close (Linger avoids that).
		_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := client.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("client read %d bytes, %v after Close; want EOF or a reset", n, err)
		}
		if err := reg.Write([]byte("x"), time.Second); !errors.Is(err, ErrClosed) {
			t.Errorf("Write after Close: %v, want ErrClosed", err)
		}
	})
}

func TestAddAfterClose(t *testing.T) {
	p, err := New(Options{Loops: 1})
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	_, server := pair(t)
	if _, err := p.Add(server, newRecorder()); !errors.Is(err, ErrClosed) {
		t.Errorf("Add after Close: %v, want ErrClosed", err)
	}
}

func TestWriteAndLinger(t *testing.T) {
	modes(t, func(t *testing.T, p *Poller) {
		client, rec, reg := added(t, p)
		// More than the socket buffers hold: Write waits for the reader.
		big := bytes.Repeat([]byte("pulse"), 1<<20)
		got := make(chan []byte, 1)
		go func() {
			b, _ := io.ReadAll(client)
			got <- b
		}()
		if err := reg.Write(big, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if err := reg.Write([]byte("bye"), time.Second); err != nil {
			t.Fatal(err)
		}
		// The client has not closed and keeps sending: Linger shuts the
		// write side (the client reads everything, then EOF), drops what
		// arrives, and closes after the wait.
		reg.Linger(300 * time.Millisecond)
		_, _ = client.Write([]byte("late"))
		select {
		case b := <-got:
			if !bytes.Equal(b, append(big, "bye"...)) {
				t.Errorf("client read %d bytes, want %d", len(b), len(big)+3)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no EOF after Linger")
		}
		time.Sleep(500 * time.Millisecond)
		rec.silentAfter(t, 0, "Linger")
		if err := reg.Write([]byte("x"), time.Second); !errors.Is(err, ErrClosed) {
			t.Errorf("Write after Linger's wait: %v, want ErrClosed", err)
		}
	})
}

func TestWriteTimesOut(t *testing.T) {
	modes(t, func(t *testing.T, p *Poller) {
		_, _, reg := added(t, p) // the client never reads
		chunk := make([]byte, 1<<20)
		for i := 0; ; i++ {
			err := reg.Write(chunk, 200*time.Millisecond)
			if err == nil && i < 1000 {
				continue
			}
			var ne net.Error
			if !errors.Is(err, ErrWriteTimeout) && !(errors.As(err, &ne) && ne.Timeout()) {
				t.Fatalf("write %d to a client that does not read: %v, want a timeout", i, err)
			}
			break
		}
	})
}

func TestPollerCloseClosesConnections(t *testing.T) {
	modes(t, func(t *testing.T, p *Poller) {
		client, _, _ := added(t, p)
		p.Close()
		_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := client.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
			t.Errorf("client read after the poller's Close: %v, want EOF", err)
		}
	})
}

// TestSendKeepsOrder: with io_uring, Send queues without waiting, in order
// with Write; no other mode can, and says so.
func TestSendKeepsOrder(t *testing.T) {
	modes(t, func(t *testing.T, p *Poller) {
		client, _, reg := added(t, p)
		if p.Mode() != IOURing {
			if reg.Send([]byte("x")) {
				t.Errorf("Send in %s mode: true, want false", p.Mode())
			}
			return
		}
		var want bytes.Buffer
		for i := range 200 {
			b := []byte{byte('a' + i%26)}
			want.Write(b)
			if i == 100 {
				if err := reg.Write(b, time.Second); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if !reg.Send(b) {
				t.Fatalf("Send %d: false", i)
			}
		}
		got := make([]byte, want.Len())
		_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(client, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Errorf("client read %q, want %q", got, want.Bytes())
		}
		// A peer that does not read gets a bounded queue.
		big := make([]byte, maxQueuedSend/4)
		refused := false
		for range 1000 {
			if !reg.Send(big) {
				refused = true
				break
			}
		}
		if !refused {
			t.Error("Send queued 1000 × 16 KiB for a peer that does not read")
		}
	})
}

func TestDefaultLoops(t *testing.T) {
	tests := []struct{ procs, want int }{{1, 1}, {2, 1}, {3, 1}, {4, 2}, {16, 8}}
	for _, tt := range tests {
		prev := runtime.GOMAXPROCS(tt.procs)
		got := DefaultLoops()
		runtime.GOMAXPROCS(prev)
		if got != tt.want {
			t.Errorf("GOMAXPROCS %d: %d loops, want %d", tt.procs, got, tt.want)
		}
	}
	p, err := New(Options{Mode: Epoll})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Mode() != Goroutines && len(p.loops) != DefaultLoops() {
		t.Errorf("%d loops, want %d", len(p.loops), DefaultLoops())
	}
}
