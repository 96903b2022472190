package ingest

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pulse-analytics/pulse/event"
	"github.com/pulse-analytics/pulse/ingest/wsframe"
)

var hostile = flag.Duration("hostile", 0, "run TestHostileLoad for this long (loopback only), e.g. -hostile 20s")

// TestHostileLoad is the hostile-load benchmark, run only when asked
// (go test -run HostileLoad -hostile 20s ./ingest): on one node, 1,000
// well-behaved batched trackers send 20 events a second each while 300
// connections from 127.0.0.2 flood pings and never read, 300 from
// 127.0.0.3 trickle half-sent 64 KiB frames, and 50 trackers from
// 127.0.0.4 send every event on a new page path. Every good tracker's
// events must be stored exactly, a new tracker's hello must come within
// 1 s once the ramp is over, and the node must stay ready. It reports the figures; the
// process's RSS includes the attackers' and trackers' own.
func TestHostileLoad(t *testing.T) {
	if *hostile <= 0 {
		t.Skip("a benchmark: run with -hostile 20s")
	}
	n := startNode(t, nil)
	ctx, stop := context.WithTimeout(context.Background(), *hostile)
	defer stop()
	var wg sync.WaitGroup

	// Attackers.
	ping := bytes.Repeat(clientFrame(fin(wsframe.Ping), bytes.Repeat([]byte{'p'}, 125)), 2000)
	half := clientFrame(fin(wsframe.Text), bytes.Repeat([]byte{' '}, 64<<10-16))
	var attacks atomic.Int64
	attack := func(from string, run func(c *rawClient)) {
		wg.Go(func() {
			for ctx.Err() == nil {
				c, err := tryDialRaw(n.url, "/v1/track?v=1", rawOptions{from: from, readBuffer: 4096})
				if err != nil {
					time.Sleep(100 * time.Millisecond)
					continue
				}
				attacks.Add(1)
				go func() { <-ctx.Done(); c.Close() }()
				run(c)
				c.Close()
			}
		})
	}
	for range 300 {
		attack("127.0.0.2", func(c *rawClient) {
			_ = c.SetWriteDeadline(time.Now().Add(*hostile))
			_, _ = c.Write(ping)
		})
		attack("127.0.0.3", func(c *rawClient) {
			_ = c.SetWriteDeadline(time.Now().Add(*hostile))
			if _, err := c.Write(half[:4096]); err != nil {
				return
			}
			for i := 4096; i < len(half) && ctx.Err() == nil; i++ {
				time.Sleep(time.Second)
				if _, err := c.Write(half[i : i+1]); err != nil {
					return
				}
			}
		})
	}

	// Trackers: the good ones count what they sent; path flooders send
	// a new path with every event.
	var sent atomic.Int64
	sessions := sync.Map{}
	track := func(from string, newPaths bool) {
		wg.Go(func() {
			d := websocket.Dialer{NetDialContext: localDialer(from)}
			c, _, err := d.Dial(n.url+"/v1/track?v=1", nil)
			if err != nil {
				t.Errorf("tracker from %s: %v", from, err)
				return
			}
			defer c.Close()
			var hello struct{ Session string }
			if err := c.ReadJSON(&hello); err != nil {
				t.Errorf("hello: %v", err)
				return
			}
			if !newPaths {
				sessions.Store(hello.Session, true)
			}
			go func() { // acks; what was stored is counted from the stream
				for {
					if _, _, err := c.ReadMessage(); err != nil {
						return
					}
				}
			}()
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for seq := uint64(1); ctx.Err() == nil; seq++ {
				events := make([]map[string]any, 20)
				for i := range events {
					path := "/"
					if newPaths {
						path = fmt.Sprintf("/p/%d/%d", seq, i)
					}
					events[i] = map[string]any{"k": "scroll", "a": 1, "x": 1, "y": i, "ph": 1000, "vw": 800, "p": path}
				}
				if c.WriteJSON(map[string]any{"type": "batch", "seq": seq, "events": events}) != nil {
					t.Errorf("tracker from %s: could not send batch %d", from, seq)
					return
				}
				if !newPaths {
					sent.Add(20)
				}
				select {
				case <-tick.C:
				case <-ctx.Done():
				}
			}
			_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		})
	}
	for i := range 1000 {
		track(fmt.Sprint("127.0.1.", 1+i%200), false)
	}
	for range 50 {
		track("127.0.0.4", true)
	}

	// New trackers all along: each hello within 1 s, and /readyz 200.
	// The first seconds are the ramp, in which this one process dials
	// 1,650 connections on two cores, its own and the node's work
	// together: hellos then are reported, and the goal holds after it.
	const ramp = 3 * time.Second
	var hellos, afterRamp []time.Duration
	var slowestAt time.Duration
	var notReady int
	began := time.Now()
	for ctx.Err() == nil {
		start := time.Now()
		c, _, err := websocket.DefaultDialer.Dial(n.url+"/v1/track?v=1", nil)
		if err != nil {
			t.Errorf("new tracker: %v", err)
		} else {
			_ = c.SetReadDeadline(start.Add(5 * time.Second))
			var hello struct{ Type string }
			if err := c.ReadJSON(&hello); err != nil {
				t.Errorf("new tracker's hello: %v", err)
			}
			if d := time.Since(start); len(hellos) == 0 || d > slices.Max(hellos) {
				slowestAt = start.Sub(began)
			}
			hellos = append(hellos, time.Since(start))
			if start.Sub(began) > ramp {
				afterRamp = append(afterRamp, time.Since(start))
			}
			c.Close()
		}
		if n.srv.Ready() != nil {
			notReady++
		}
		time.Sleep(200 * time.Millisecond)
	}
	rss := rssOf(t)
	wg.Wait()

	// Every good tracker's events are stored, exactly once.
	var stored int64
	deadline := time.Now().Add(30 * time.Second)
	for {
		stored = 0
		for _, m := range n.messages(t) {
			if !strings.HasPrefix(m.Subject, "activity.") {
				continue
			}
			var b event.Batch
			_ = event.DecodeBatches(m.Data, &b, func(b *event.Batch) {
				if _, good := sessions.Load(b.Session); good {
					stored += int64(len(b.Events))
				}
			})
		}
		if stored >= sent.Load() || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	slices.Sort(hellos)
	slowest := hellos[len(hellos)-1]
	slowestAfter := slices.Max(afterRamp)
	t.Logf("%s of hostile load: good events sent %d, stored %d; attacking connections %d (ping %v, frame_timeout %v, not_reading %v, buffer_full %v closed); new trackers %d, hello median %s, slowest %s (%s into the run), slowest after the %s ramp %s; not ready %d times; process RSS %d MiB",
		*hostile, sent.Load(), stored, attacks.Load(), n.rejected(t, "rate_limit"), n.rejected(t, "frame_timeout"), n.rejected(t, "not_reading"), n.rejected(t, "buffer_full"),
		len(hellos), hellos[len(hellos)/2].Round(time.Millisecond), slowest.Round(time.Millisecond), slowestAt.Round(100*time.Millisecond), ramp, slowestAfter.Round(time.Millisecond), notReady, rss>>20)
	if stored != sent.Load() {
		t.Errorf("stored %d of the good trackers' %d events", stored, sent.Load())
	}
	if slowestAfter > time.Second {
		t.Errorf("slowest hello after the ramp %s, want within 1 s", slowestAfter)
	}
	if rss > 1<<30 {
		t.Errorf("RSS %d MiB, want under 1 GiB", rss>>20)
	}
}

// rssOf reads this process's resident memory from /proc.
func rssOf(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Logf("no RSS: %v", err)
		return 0
	}
	var size, resident int64
	_, _ = fmt.Sscan(string(b), &size, &resident)
	return resident * int64(os.Getpagesize())
}

// localDialer dials from the loopback address from.
func localDialer(from string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	return d.DialContext
}
