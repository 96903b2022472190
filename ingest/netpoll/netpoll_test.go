package netpoll

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
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

func modes(t *testing.T, test func(t *testing.T, p *Poller)) {
	for _, m := range []struct {
		name string
		opts Options
	}{{"epoll", Options{Loops: 2}}, {"goroutines", Options{Goroutines: true}}} {
		t.Run(m.name, func(t *testing.T) {
			p, err := New(m.opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(p.Close)
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

func TestRemoveAndPause(t *testing.T) {
	modes(t, func(t *testing.T, p *Poller) {
		client, server := pair(t)
		rec := newRecorder()
		reg, err := p.Add(server, rec)
		if err != nil {
			t.Fatal(err)
		}
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

		reg.Remove()
		reg.Remove() // idempotent
		_, _ = client.Write([]byte("three"))
		client.Close()
		time.Sleep(100 * time.Millisecond)
		if rec.len() != 6 {
			t.Errorf("read after Remove: %q", rec.data.String())
		}
		select {
		case err := <-rec.closed:
			t.Errorf("Closed(%v) after Remove", err)
		default:
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
