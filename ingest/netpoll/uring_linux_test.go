//go:build linux && (amd64 || arm64)

package netpoll

import (
	"bytes"
	"errors"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestRoundWait(t *testing.T) {
	const round = 50 * time.Millisecond
	onGrid := time.UnixMilli(1_700_000_000_000) // a multiple of 50 ms
	tests := []struct {
		name   string
		now    time.Time
		reaped int
		since  time.Duration
		want   time.Duration
	}{
		{"after an idle wait: until the grid", onGrid.Add(20 * time.Millisecond), 0, 0, 30 * time.Millisecond},
		{"few completions: until the grid", onGrid.Add(10 * time.Millisecond), 25, round, 40 * time.Millisecond},
		// At 1,000 per 50 ms, roundFill completions come in
		// roundFill × 50 µs.
		{"a fast rate: until roundFill have come", onGrid, 1000, round, roundFill * 50 * time.Microsecond},
		{"faster still", onGrid.Add(time.Millisecond), roundFill * 1000, time.Second, time.Millisecond},
		{"the grid comes first", onGrid.Add(45 * time.Millisecond), 500, round, 5 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := roundWait(tt.now, round, tt.reaped, tt.since); got != tt.want {
			t.Errorf("%s: roundWait = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestRoundAtMostMaxRound(t *testing.T) {
	tests := []struct {
		round, want time.Duration
	}{
		{0, 10 * time.Millisecond},
		{50 * time.Millisecond, 50 * time.Millisecond},
		{time.Hour, MaxRound}, // sends and closes would wait an hour
	}
	for _, tt := range tests {
		p, err := New(Options{Mode: IOURing, Loops: 1, Round: tt.round})
		if err != nil {
			t.Fatal(err)
		}
		if p.Mode() != IOURing {
			p.Close()
			t.Skip("io_uring not available here")
		}
		if got := p.loops[0].(*uringLoop).round; got != tt.want {
			t.Errorf("Round %v: loop rounds every %v, want %v", tt.round, got, tt.want)
		}
		p.Close()
	}
}

// TestReadsPastItsBuffers: connections that send far more at once than an
// io_uring loop has buffers for run them out (the kernel then ends their
// receives with ENOBUFS); they are read on, and nothing is lost.
func TestReadsPastItsBuffers(t *testing.T) {
	modes(t, func(t *testing.T, p *Poller) {
		const senders, perSender = 8, 4 << 20 // 32 MiB against 1 MiB of buffers
		want := make([]byte, perSender)
		for i := range want {
			want[i] = byte(i * 7)
		}
		recs := make([]*recorder, senders)
		for i := range recs {
			var client net.Conn
			client, recs[i], _ = added(t, p)
			go func() { _, _ = client.Write(want) }()
		}
		for i, rec := range recs {
			rec.waitLen(t, perSender)
			if !bytes.Equal(rec.data.Bytes(), want) {
				t.Errorf("conn %d: the bytes differ from those sent", i)
			}
			rec.silentAfter(t, perSender, "sending")
		}
		if p.Mode() == IOURing {
			var out int64
			for _, l := range p.loops {
				out += l.(*uringLoop).outOfBuffers.Load()
			}
			if out == 0 {
				t.Error("no receive ran out of buffers: the test did not test that")
			}
			t.Logf("receives out of buffers: %d", out)
		}
	})
}

// TestFailedLoopEndsItsConnectionsAndEpollTakesOver: when io_uring_enter
// fails, the loop does not panic (which took every connection of the
// process with it): its connections end with the error, and new ones are
// read by an epoll loop in its place.
func TestFailedLoopEndsItsConnectionsAndEpollTakesOver(t *testing.T) {
	p, err := New(Options{Mode: IOURing, Loops: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	if p.Mode() != IOURing {
		t.Skip("io_uring not available here")
	}
	client, rec, _ := added(t, p)
	if _, err := client.Write([]byte("before")); err != nil {
		t.Fatal(err)
	}
	rec.waitLen(t, len("before"))
	l := p.loops[0].(*uringLoop)
	broken := error(unix.EBADF)
	l.injected.Store(&broken)
	l.wake()
	select {
	case err := <-rec.closed:
		if !errors.Is(err, unix.EBADF) {
			t.Fatalf("closed with %v, want the loop's error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the failed loop's connection was not ended")
	}
	// The next connection goes to an epoll loop, and is read.
	client2, rec2, _ := added(t, p)
	if p.Mode() != Epoll || p.Failures() != 1 {
		t.Fatalf("after the failure: mode %s, %d failures; want epoll, 1", p.Mode(), p.Failures())
	}
	if _, err := client2.Write([]byte("after")); err != nil {
		t.Fatal(err)
	}
	rec2.waitLen(t, len("after"))
}

// TestFullQueueThatCannotBeSubmitted: when the submission queue is full
// and submitting it fails, the ring says so instead of panicking (which
// took the whole process down), hands out an entry that is never
// submitted, and the loop's next enter fails with the reason, which ends
// the loop as any failed enter does.
func TestFullQueueThatCannotBeSubmitted(t *testing.T) {
	r, err := newRing(4, 8, 0)
	if err != nil {
		t.Skipf("io_uring not available here: %v", err)
	}
	// Enter on a descriptor that is no ring fails, as a broken ring's
	// would; the ring's own is put back before it is closed.
	devNull, err := unix.Open("/dev/null", unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	ringFD := r.fd
	r.fd = devNull
	defer func() {
		r.fd = ringFD
		r.close()
		_ = unix.Close(devNull)
	}()
	for range r.sqEntries {
		if r.next() == &r.discard {
			t.Fatal("an entry discarded while the queue had room")
		}
	}
	if e := r.next(); e != &r.discard || r.err == nil {
		t.Fatalf("full queue that cannot be submitted: entry discarded %v, err %v", e == &r.discard, r.err)
	}
	l := &uringLoop{ring: r}
	if err := l.enter(); !errors.Is(err, r.err) {
		t.Errorf("the loop's enter: %v, want the ring's %v", err, r.err)
	}
}
