package ingest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	dto "github.com/prometheus/client_model/go"

	"github.com/pulse-analytics/pulse/clientaddr"
	"github.com/pulse-analytics/pulse/ingest/wsframe"
)

// rejected reads the node's pulse_ingest_rejected_total for reason.
func (n *testNode) rejected(t *testing.T, reason string) float64 {
	t.Helper()
	var m dto.Metric
	if err := n.srv.metrics.rejected.WithLabelValues(reason).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// waitFor polls cond until it holds or wait passes.
func waitFor(t *testing.T, wait time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", wait, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// helloWithin dials a tracker and fails the test unless its hello comes
// within wait.
func helloWithin(t *testing.T, url string, wait time.Duration) *websocket.Conn {
	t.Helper()
	start := time.Now()
	c := dial(t, url+"/v1/track?v=1", nil)
	_ = c.SetReadDeadline(start.Add(wait))
	var hello struct{ Type string }
	if err := c.ReadJSON(&hello); err != nil || hello.Type != "hello" {
		t.Fatalf("hello after %s: %+v, %v", time.Since(start).Round(time.Millisecond), hello, err)
	}
	return c
}

// TestPingFloodLeavesOthersServed: 600 connections from one address
// flood pings and never read. Before, every ping queued a pong, each pong
// that could not be written held a worker for writeWait, and once every
// worker was held no new tracker got its hello. Now a connection has at
// most one pong waiting, a write that cannot finish ends its connection,
// one address holds at most its share of workers, and the hello does not
// wait for a worker at all.
func TestPingFloodLeavesOthersServed(t *testing.T) {
	if testing.Short() {
		t.Skip("600 connections")
	}
	n := startNode(t, nil)
	const attackers = 600
	ping := clientFrame(fin(wsframe.Ping), bytes.Repeat([]byte{'p'}, 125))
	flood := bytes.Repeat(ping, 400)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var dialErrs []error
	for i := range attackers {
		wg.Go(func() {
			c, err := tryDialRaw(n.url, "/v1/track?v=1", rawOptions{from: "127.0.0.2", readBuffer: 2048})
			if err != nil && strings.Contains(err.Error(), "429") {
				return // beyond the address's burst of new connections
			}
			if err != nil {
				mu.Lock()
				dialErrs = append(dialErrs, fmt.Errorf("attacker %d: %w", i, err))
				mu.Unlock()
				return
			}
			t.Cleanup(func() { c.Close() })
			_ = c.SetWriteDeadline(time.Now().Add(20 * time.Second))
			_, _ = c.Write(flood) // until the node stops reading or closes
		})
	}
	// Good trackers from another address arrive while the flood runs.
	for range 10 {
		c := helloWithin(t, n.url, 2*time.Second)
		if err := c.WriteJSON(batch(1, 1)); err != nil {
			t.Fatal(err)
		}
		var ack struct{ Type string }
		readType(t, c, &ack)
		if err := n.srv.Ready(); err != nil {
			t.Errorf("readyz during the flood: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	wg.Wait()
	if len(dialErrs) > 0 {
		t.Fatalf("%d attackers could not connect: %v", len(dialErrs), errors.Join(dialErrs[:1]...))
	}
	helloWithin(t, n.url, 2*time.Second)
}

// TestTrackerThatDoesNotReadIsClosed: a write to a tracker that does not
// read ends the connection after writeWait, with no close frame (that
// would wait as long again), and frees its worker. The tracker is one end
// of a net.Pipe, whose writes wait for the other end to read: a socket's
// buffers make the same happen, only later.
func TestTrackerThatDoesNotReadIsClosed(t *testing.T) {
	n := startNode(t, nil)
	const ip = "192.0.2.1"
	tracker, node := net.Pipe()
	defer tracker.Close()
	if n.srv.track(ip) != trackOK {
		t.Fatal("not tracked")
	}
	c := newConn(n.srv, node, ip, "demo", newID(), newID(), true)
	n.srv.register(c)
	started := make(chan error, 1)
	go func() { started <- c.start() }()
	hello := make([]byte, 512)
	if _, err := tracker.Read(hello); err != nil {
		t.Fatal(err)
	}
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	// A ping, whose pong nobody reads.
	if _, err := tracker.Write(clientFrame(fin(wsframe.Ping), []byte("x"))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, writeWait+5*time.Second, "not_reading counted", func() bool { return n.rejected(t, "not_reading") == 1 })
	waitFor(t, 5*time.Second, "connection forgotten", func() bool {
		n.srv.mu.Lock()
		defer n.srv.mu.Unlock()
		return len(n.srv.conns) == 0 && n.srv.perIP[ip] == 0
	})
}

// TestPingsAreAnsweredAndBounded: a ping gets a pong with its payload;
// pings that arrive while a pong waits get one pong, for the latest; and
// pings have a budget as events do (controlsPerSecond, a burst of ten
// times that), so a flood of them ends the connection with 1008.
func TestPingsAreAnsweredAndBounded(t *testing.T) {
	n := startNode(t, nil)
	c := dialRaw(t, n.url, "/v1/track?v=1", rawOptions{})
	if f, err := c.readFrame(5 * time.Second); err != nil || f.op != wsframe.Text {
		t.Fatalf("hello: %v %v", f, err)
	}
	if _, err := c.Write(clientFrame(fin(wsframe.Ping), []byte("one"))); err != nil {
		t.Fatal(err)
	}
	if f, err := c.readFrame(5 * time.Second); err != nil || f.op != wsframe.Pong || string(f.payload) != "one" {
		t.Fatalf("pong: %v %q %v", f.op, f.payload, err)
	}
	var many []byte
	for i := range 50 {
		many = append(many, clientFrame(fin(wsframe.Ping), fmt.Appendf(nil, "p%d", i))...)
	}
	if _, err := c.Write(many); err != nil {
		t.Fatal(err)
	}
	// At least the last ping is answered, and never more pongs than pings.
	var pongs []string
	for len(pongs) == 0 || pongs[len(pongs)-1] != "p49" {
		f, err := c.readFrame(5 * time.Second)
		if err != nil || f.op != wsframe.Pong {
			t.Fatalf("after pongs %q: %v %v", pongs, f.op, err)
		}
		pongs = append(pongs, string(f.payload))
	}
	if len(pongs) > 50 {
		t.Fatalf("%d pongs for 50 pings", len(pongs))
	}
	// 51 pings so far; 60 more exhaust the burst of 100.
	if _, err := c.Write(bytes.Repeat(clientFrame(fin(wsframe.Ping), nil), 60)); err != nil {
		t.Fatal(err)
	}
	_, closing := c.readUntilClose(t, 5*time.Second)
	if closing.closeCode() != websocket.ClosePolicyViolation || !strings.Contains(string(closing.payload), "more than 10 control frames a second") {
		t.Fatalf("close %d %q, want 1008 for the rate", closing.closeCode(), closing.payload[2:])
	}
}

// TestHalfSentFrameTimesOut: a frame whose bytes trickle in keeps the
// connection from timing out as idle, but not for longer than FrameWait;
// what the reader held is given back to the node's budget.
func TestHalfSentFrameTimesOut(t *testing.T) {
	n := startNode(t, func(c *Config) { c.FrameWait = 300 * time.Millisecond })
	c := dialRaw(t, n.url, "/v1/track?v=1", rawOptions{})
	frame := clientFrame(fin(wsframe.Text), bytes.Repeat([]byte{' '}, 60<<10))
	if _, err := c.Write(frame[:16]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the node holds the frame's start", func() bool { return n.srv.pending.Load() > 0 })
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for i := 16; i < len(frame); i++ {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := c.Write(frame[i : i+1]); err != nil {
				return
			}
		}
	}()
	_, closing := c.readUntilClose(t, 5*time.Second)
	if closing.closeCode() != websocket.ClosePolicyViolation || !strings.Contains(string(closing.payload), "a frame must arrive within 300ms") {
		t.Fatalf("close %d %q, want 1008 for the frame's time", closing.closeCode(), closing.payload)
	}
	waitFor(t, 5*time.Second, "pending bytes given back", func() bool { return n.srv.pending.Load() == 0 })
	if got := n.rejected(t, "frame_timeout"); got != 1 {
		t.Errorf("frame_timeout counted %v times, want 1", got)
	}
}

// TestPendingBytesBudget: the bytes of unfinished frames all connections
// hold are bounded for the node; the connection that would go beyond the
// bound is closed with 1013, and the others are not.
func TestPendingBytesBudget(t *testing.T) {
	n := startNode(t, func(c *Config) { c.MaxPendingBytes = 70_000 })
	frame := clientFrame(fin(wsframe.Text), bytes.Repeat([]byte{' '}, 60_000))
	first := dialRaw(t, n.url, "/v1/track?v=1", rawOptions{})
	if _, err := first.Write(frame[:30_000]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the first frame's start held", func() bool { return n.srv.pending.Load() >= 30_000 })
	second := dialRaw(t, n.url, "/v1/track?v=1", rawOptions{})
	if _, err := second.Write(frame[:45_000]); err != nil {
		t.Fatal(err)
	}
	_, closing := second.readUntilClose(t, 5*time.Second)
	if closing.closeCode() != websocket.CloseTryAgainLater {
		t.Fatalf("second connection: close %d %q, want 1013", closing.closeCode(), closing.payload)
	}
	waitFor(t, 5*time.Second, "the second's bytes given back", func() bool { return n.srv.pending.Load() <= 30_000 })
	// The first finishes its frame (60,000 spaces are not a tracker
	// frame, so it is refused for that, not for the budget).
	if _, err := first.Write(frame[30_000:]); err != nil {
		t.Fatal(err)
	}
	_, closing = first.readUntilClose(t, 5*time.Second)
	if closing.closeCode() != websocket.CloseInvalidFramePayloadData {
		t.Fatalf("first connection: close %d %q, want 1007 for its content", closing.closeCode(), closing.payload)
	}
	waitFor(t, 5*time.Second, "all bytes given back", func() bool { return n.srv.pending.Load() == 0 })
}

// TestEmptyEventsStopAtTheLimit: a frame of thousands of empty events is
// refused having read no more than the limit, in the fast decoder and in
// encoding/json's.
func TestEmptyEventsStopAtTheLimit(t *testing.T) {
	for _, tc := range []struct{ name, event string }{
		{"fast", `{}`},
		{"encoding/json", `{"p":"\u002f"}`}, // an escape: the fast decoder gives up
	} {
		t.Run(tc.name, func(t *testing.T) {
			events := strings.Repeat(tc.event+",", 60_000/(len(tc.event)+1))
			frame := []byte(`{"type":"batch","seq":1,"events":[` + events[:len(events)-1] + `]}`)
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, _, err := decodeBatch(frame, &batchFrame{}, 1, 200)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, errFrame) || !strings.Contains(err.Error(), "1 to 200 events") {
				t.Fatalf("got %v, want the limit's error", err)
			}
			// The frame itself is 60 KB; 200 events are about 25 KB.
			if got := after.TotalAlloc - before.TotalAlloc; got > 256<<10 {
				t.Errorf("refusing a %d-byte frame allocated %d bytes", len(frame), got)
			}
		})
	}
}

// TestWorkersShareByAddress: one address's connections hold at most
// maxWorkersPerAddress workers, so another address's work runs while they
// are blocked; and with every worker blocked, the node is not ready.
func TestWorkersShareByAddress(t *testing.T) {
	s := &Server{}
	block := make(chan struct{})
	started := make(chan string, maxWorkers+100)
	task := func(c *conn) {
		c.do(func() {
			started <- c.ip
			<-block
		})
	}
	for range maxWorkersPerAddress + 10 {
		task(&conn{s: s, ip: "attacker"})
	}
	for range maxWorkersPerAddress {
		<-started
	}
	other := &conn{s: s, ip: "tracker"}
	task(other)
	if ip := <-started; ip != "tracker" {
		t.Fatalf("%s ran before the other address's task", ip)
	}
	select {
	case ip := <-started:
		t.Fatalf("%s's connection ran beyond its share", ip)
	case <-time.After(50 * time.Millisecond):
	}
	if _, stalled := s.workers.stalled(time.Now().Add(time.Hour), time.Second); stalled {
		t.Fatal("stalled while workers are free")
	}
	// Fill every worker from many addresses, and queue one more.
	for i := range maxWorkers - maxWorkersPerAddress - 1 {
		task(&conn{s: s, ip: fmt.Sprint("a", i%100)})
	}
	task(&conn{s: s, ip: "late"})
	if waiting, stalled := s.workers.stalled(time.Now().Add(2*time.Second), time.Second); !stalled || waiting == 0 {
		t.Fatalf("every worker blocked: stalled %v with %d waiting, want stalled", stalled, waiting)
	}
	if waiting, stalled := s.workers.stalled(time.Now(), time.Second); stalled {
		t.Fatalf("stalled at once, with %d waiting: want only after the wait", waiting)
	}
	close(block)
	// Everything queued runs once workers are free.
	for range maxWorkers - maxWorkersPerAddress - 1 + 10 + 1 {
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			t.Fatal("queued work did not run")
		}
	}
	waitFor(t, 5*time.Second, "workers idle", func() bool {
		s.workers.mu.Lock()
		defer s.workers.mu.Unlock()
		return s.workers.running == 0 && s.workers.queued == 0 && len(s.workers.turns) == 0
	})
}

// TestConnectionsPerClientBehindAProxy: behind a trusted proxy the limit
// of connections per address counts the client X-Forwarded-For names
// (IPv6 by /64), not the proxy; from others the header is ignored.
func TestConnectionsPerClientBehindAProxy(t *testing.T) {
	proxy, err := clientaddr.Parse("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	n := startNode(t, func(c *Config) { c.MaxConnsPerIP = 2; c.ClientAddrs = proxy })
	from := func(client string) http.Header { return http.Header{"X-Forwarded-For": {client}} }
	status := func(h http.Header) int {
		c, resp, err := websocket.DefaultDialer.Dial(n.url+"/v1/track", h)
		if err == nil {
			t.Cleanup(func() { c.Close() })
			return http.StatusSwitchingProtocols
		}
		if resp == nil {
			t.Fatal(err)
		}
		return resp.StatusCode
	}
	for i, tc := range []struct {
		client string
		want   int
	}{
		{"203.0.113.1", 101}, {"203.0.113.1", 101}, {"203.0.113.1", 429},
		{"203.0.113.2", 101},                                                              // another client behind the same proxy
		{"2001:db8:1:2::1", 101}, {"2001:db8:1:2::ffff", 101}, {"2001:db8:1:2:3::9", 429}, // one /64
		{"2001:db8:1:3::1", 101},
	} {
		if got := status(from(tc.client)); got != tc.want {
			t.Errorf("%d: connection from %s: %d, want %d", i, tc.client, got, tc.want)
		}
	}
	// A peer that is not a trusted proxy is counted as itself.
	direct := startNode(t, func(c *Config) { c.MaxConnsPerIP = 2 })
	for i := range 3 {
		want := 101
		if i == 2 {
			want = 429
		}
		c, resp, err := websocket.DefaultDialer.Dial(direct.url+"/v1/track", from(fmt.Sprint("203.0.113.", 10+i)))
		got := 101
		if err != nil {
			got = resp.StatusCode
		} else {
			t.Cleanup(func() { c.Close() })
		}
		if got != want {
			t.Errorf("direct connection %d with its own X-Forwarded-For: %d, want %d", i, got, want)
		}
	}
}

// TestConnectRatePerAddress: one address may open connections at
// MaxConnectsPerIPPerSecond, with a burst of ten times that; beyond, the
// upgrade is refused with 429 and Retry-After, before any handshake work,
// and other addresses are not affected.
func TestConnectRatePerAddress(t *testing.T) {
	n := startNode(t, func(c *Config) { c.MaxConnectsPerIPPerSecond = 2 })
	for i := range 20 {
		c, err := tryDialRaw(n.url, "/v1/track", rawOptions{from: "127.0.0.5"})
		if err != nil {
			t.Fatalf("connection %d of the burst: %v", i, err)
		}
		c.Close()
	}
	other, resp, err := websocket.DefaultDialer.Dial(n.url+"/v1/track", nil)
	if err != nil {
		t.Fatalf("another address: %v %v", resp, err)
	}
	other.Close()
	if _, err := tryDialRaw(n.url, "/v1/track", rawOptions{from: "127.0.0.5"}); err == nil || !strings.Contains(err.Error(), "429") {
		t.Fatalf("the 21st connection at once: %v, want 429", err)
	}
	if got := n.rejected(t, "connects_per_ip"); got != 1 {
		t.Errorf("connects_per_ip counted %v, want 1", got)
	}
	time.Sleep(600 * time.Millisecond) // a token back
	c, err := tryDialRaw(n.url, "/v1/track", rawOptions{from: "127.0.0.5"})
	if err != nil {
		t.Fatalf("after a pause: %v", err)
	}
	c.Close()
}
