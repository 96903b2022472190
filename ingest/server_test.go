package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go/jetstream"
	dto "github.com/prometheus/client_model/go"

	"github.com/pulse-analytics/pulse/event"
	"github.com/pulse-analytics/pulse/natsutil/natstest"
	"github.com/pulse-analytics/pulse/store"
)

type staticSites map[string]store.Site

func (s staticSites) Site(key string) (store.Site, bool) {
	site, ok := s[key]
	return site, ok
}

type testNode struct {
	srv *Server
	url string // ws://…
	js  jetstream.JetStream
	ns  *natstest.Server
}

func startNode(t *testing.T, edit func(*Config)) *testNode {
	t.Helper()
	ns := natstest.Run(t)
	cfg := Config{Publisher: ns.JS, Logger: slog.New(slog.DiscardHandler), Sites: staticSites{
		"demo": {Key: "demo"},
		"shop": {Key: "shop", Origins: []string{"https://shop.example"}},
	}}
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		_ = s.Shutdown(context.Background())
		hs.Close()
	})
	return &testNode{srv: s, url: "ws" + strings.TrimPrefix(hs.URL, "http"), js: ns.JS, ns: ns}
}

// messages returns every message in ACTIVITY, oldest first.
func (n *testNode) messages(t *testing.T) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := context.Background()
	st, err := n.js.Stream(ctx, event.StreamActivity)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func (n *testNode) waitMessages(t *testing.T, want int) []*jetstream.RawStreamMsg {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		msgs := n.messages(t)
		if len(msgs) >= want || time.Now().After(deadline) {
			if len(msgs) != want {
				t.Fatalf("stream has %d messages, want %d", len(msgs), want)
			}
			return msgs
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitActivity waits until the stream holds want tracker and classic
// batches and returns them, oldest first.
func (n *testNode) waitActivity(t *testing.T, want int) []event.Batch {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var all []event.Batch
		for _, m := range n.messages(t) {
			if strings.HasPrefix(m.Subject, "activity.") {
				all = append(all, decodeBatches(t, m.Data)...)
			}
		}
		if len(all) >= want || time.Now().After(deadline) {
			if len(all) != want {
				t.Fatalf("stream has %d batches, want %d", len(all), want)
			}
			return all
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// decodeBatches returns copies of the batches of a message.
func decodeBatches(t *testing.T, data []byte) []event.Batch {
	t.Helper()
	var all []event.Batch
	var b event.Batch
	if err := event.DecodeBatches(data, &b, func(b *event.Batch) {
		c := *b
		c.Events = slices.Clone(b.Events)
		all = append(all, c)
	}); err != nil {
		t.Fatal(err)
	}
	return all
}

func dial(t *testing.T, url string, h http.Header) *websocket.Conn {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial(url, h)
	if err != nil {
		status := ""
		if resp != nil {
			status = resp.Status
		}
		t.Fatalf("dial %s: %v %s", url, err, status)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func readType(t *testing.T, c *websocket.Conn, v any) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := c.ReadJSON(v); err != nil {
		t.Fatalf("read: %v", err)
	}
}

func batch(seq uint64, n int) map[string]any {
	events := make([]map[string]any, n)
	for i := range events {
		events[i] = map[string]any{"k": "move", "a": 1, "x": i, "y": i}
	}
	return map[string]any{"type": "batch", "seq": seq, "events": events}
}

// TestManyBatchesInFlight: a tracker that sends more batches than a
// connection may have in flight is paused, not stalled: every batch is
// stored and acked in order.
func TestManyBatchesInFlight(t *testing.T) {
	n := startNode(t, func(c *Config) { c.AckInterval = time.Nanosecond })
	c := dial(t, n.url+"/v1/track?v=1&site=shop", nil)
	var hello struct{ Type, Session string }
	readType(t, c, &hello)
	// Rounds of more than maxQueued batches, each read (and the
	// connection paused) before the batcher stores them.
	const batches = 4 * (maxQueued + 1)
	for seq := uint64(1); seq <= batches; seq++ {
		if err := c.WriteJSON(batch(seq, 2)); err != nil {
			t.Fatal(err)
		}
		if seq%(maxQueued+1) == 0 {
			time.Sleep(10 * time.Millisecond)
		}
	}
	var ack struct {
		Type string
		Seq  uint64
	}
	for seq := uint64(1); seq <= batches; seq++ {
		readType(t, c, &ack)
		if ack.Type != "ack" || ack.Seq != seq {
			t.Fatalf("ack %+v, want seq %d", ack, seq)
		}
	}
	n.waitActivity(t, batches)
}

func TestHelloAckAndDedupeAfterReconnect(t *testing.T) {
	n := startNode(t, func(c *Config) {
		c.SampleInterval = 80 * time.Millisecond
		c.AckInterval = time.Nanosecond // an ack per batch
	})
	c := dial(t, n.url+"/v1/track?v=1&site=shop", nil)
	var hello struct {
		Type, Session               string
		SampleMs, FlushMs, MaxBatch int
	}
	readType(t, c, &hello)
	if hello.Type != "hello" || !validID(hello.Session) || hello.SampleMs != 80 || hello.FlushMs != 1000 || hello.MaxBatch != 200 {
		t.Fatalf("hello = %+v", hello)
	}
	var ack struct {
		Type string
		Seq  uint64
	}
	for seq := uint64(1); seq <= 3; seq++ {
		if err := c.WriteJSON(batch(seq, 4)); err != nil {
			t.Fatal(err)
		}
		readType(t, c, &ack)
		if ack.Type != "ack" || ack.Seq != seq {
			t.Fatalf("ack = %+v, want %d", ack, seq)
		}
	}
	// A re-send on the same connection is acked again (acks are
	// cumulative: with every batch stored), not stored again.
	_ = c.WriteJSON(batch(2, 4))
	readType(t, c, &ack)
	if ack.Seq != 3 {
		t.Fatalf("re-sent batch 2 acked as %d, want 3", ack.Seq)
	}
	c.Close()

	// The tracker reconnects with its session and re-sends batch 3 (its
	// ack was lost) and a new batch 4.
	c2 := dial(t, n.url+"/v1/track?v=1&site=shop&sid="+hello.Session, nil)
	readType(t, c2, &hello)
	for _, seq := range []uint64{3, 4} {
		_ = c2.WriteJSON(batch(seq, 4))
		readType(t, c2, &ack)
		if ack.Seq != seq {
			t.Fatalf("ack %d, want %d", ack.Seq, seq)
		}
	}
	c2.Close()

	// Batch 3 is stored again from the new connection: the aggregator
	// counts it once (by session and seq, aggregator.TestReSentBatchesCountOnce).
	// Batch 2, re-sent on the connection that stored it, is not.
	msgs := n.waitActivity(t, 5)
	var seqs []uint64
	for _, b := range msgs {
		if b.Site != "shop" || b.Session != hello.Session || len(b.Events) != 4 {
			t.Errorf("batch %+v", b)
		}
		seqs = append(seqs, b.Seq)
	}
	if fmt.Sprint(seqs) != "[1 2 3 3 4]" {
		t.Errorf("stored batches %v, want [1 2 3 3 4]", seqs)
	}
}

// TestBatcherSleepsWhileIdle: with nothing to store or ack, the batcher
// stops waking every interval, and what is sent next wakes it.
func TestBatcherSleepsWhileIdle(t *testing.T) {
	n := startNode(t, nil)
	b := n.srv.batcher
	asleep := func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.asleep
	}
	waitAsleep := func() {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !asleep(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the batcher is still awake with nothing to do")
			}
		}
	}
	waitAsleep()
	c := dial(t, n.url+"/v1/track?site=demo", nil)
	for i := range 3 {
		if err := c.WriteMessage(websocket.TextMessage, []byte(`{"id":"v1","x":1,"y":2}`)); err != nil {
			t.Fatal(err)
		}
		n.waitActivity(t, i+1)
		waitAsleep()
	}
}

// TestAcksAreCumulative: the first batch is acked at once; the ones
// stored within AckInterval of that ack by one ack of the last, sent at
// the end of the interval, or before the connection's close frame.
func TestAcksAreCumulative(t *testing.T) {
	tests := []struct {
		name        string
		ackInterval time.Duration
		shutdown    bool
	}{
		{"at the end of the interval", time.Second, false},
		{"before the close frame", time.Hour, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := startNode(t, func(c *Config) { c.AckInterval = tt.ackInterval })
			c := dial(t, n.url+"/v1/track?v=1&site=shop", nil)
			var hello struct{ Type string }
			readType(t, c, &hello)
			var ack struct {
				Type string
				Seq  uint64
			}
			_ = c.WriteJSON(batch(1, 2))
			readType(t, c, &ack)
			if ack.Type != "ack" || ack.Seq != 1 {
				t.Fatalf("first ack %+v, want seq 1", ack)
			}
			for seq := uint64(2); seq <= 5; seq++ {
				_ = c.WriteJSON(batch(seq, 2))
			}
			n.waitActivity(t, 5)
			shutdown := make(chan error, 1)
			if tt.shutdown {
				go func() { shutdown <- n.srv.Shutdown(context.Background()) }()
			}
			readType(t, c, &ack)
			if ack.Type != "ack" || ack.Seq != 5 {
				t.Fatalf("ack %+v, want one of seq 5", ack)
			}
			if !tt.shutdown {
				return
			}
			_, _, err := c.ReadMessage()
			if !websocket.IsCloseError(err, websocket.CloseServiceRestart) {
				t.Fatalf("after the ack: %v, want the close frame", err)
			}
			if err := <-shutdown; err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestPresenceJoinAndLeave(t *testing.T) {
	n := startNode(t, func(c *Config) {
		// A client that never answers pings is dropped after PongWait.
		c.PingInterval = 50 * time.Millisecond
		c.PongWait = 300 * time.Millisecond
	})
	// A classic client joins with its first frame and leaves by closing.
	c := dial(t, n.url+"/v1/track", nil)
	_ = c.WriteMessage(websocket.TextMessage, []byte(`{"id":"ann","x":1,"y":2}`))
	_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	// A tracker that stops reading (so never pongs) times out.
	silent := dial(t, n.url+"/v1/track?v=1", nil)
	_ = silent

	msgs := n.waitMessages(t, 5) // ann: join, batch, leave; silent: join, leave
	reasons := map[string]string{}
	for _, m := range msgs {
		if !strings.HasPrefix(m.Subject, "presence.") {
			continue
		}
		var p event.Presence
		if err := json.Unmarshal(m.Data, &p); err != nil {
			t.Fatal(err)
		}
		if p.Kind == event.Leave {
			reasons[p.Visitor] = p.Reason
		}
	}
	if reasons["ann"] != "closed" {
		t.Errorf("ann left with %q, want closed", reasons["ann"])
	}
	var timeouts int
	for v, r := range reasons {
		if v != "ann" && r == "timeout" {
			timeouts++
		}
	}
	if timeouts != 1 {
		t.Errorf("leave reasons %v: want one timeout", reasons)
	}
}

// TestShutdownWithoutNATS stops a node whose NATS server is gone: the
// leave of a connection cannot be stored, and Shutdown must not return
// while it is still being retried (it would outlive the node and log into
// a process that has moved on).
func TestShutdownWithoutNATS(t *testing.T) {
	n := startNode(t, func(c *Config) { c.PublishTimeout = 100 * time.Millisecond })
	c := dial(t, n.url+"/v1/track?v=1", nil)
	readType(t, c, &struct{}{}) // hello
	n.waitMessages(t, 1)        // the join
	n.ns.NS.Shutdown()

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := n.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("shutdown: %v, want the deadline exceeded", err)
	}
	var m dto.Metric
	if err := n.srv.metrics.dropped.WithLabelValues("demo", "presence").Write(&m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetCounter().GetValue(); got != 1 {
		t.Errorf("presence messages dropped when Shutdown returned: %v, want 1 (the leave)", got)
	}
}

// TestLimits checks that each kind of bad input gets its own clear answer
// and that the node keeps serving others.
func TestLimits(t *testing.T) {
	n := startNode(t, func(c *Config) { c.ReadLimit = 1024 })
	httpURL := "http" + strings.TrimPrefix(n.url, "ws")

	refused := []struct {
		name   string
		path   string
		header http.Header
		status int
	}{
		{"unknown site", "/v1/track?site=nope", nil, http.StatusNotFound},
		{"invalid site key", "/v1/track?site=../x", nil, http.StatusNotFound},
		{"wrong origin", "/v1/track?site=demo", http.Header{"Origin": {"https://evil.example"}}, http.StatusForbidden},
		{"origin of another site", "/v1/track?site=demo", http.Header{"Origin": {"https://shop.example"}}, http.StatusForbidden},
		{"bad session id", "/v1/track?v=1&sid=abc", nil, http.StatusBadRequest},
		{"bad visitor id", "/v1/track?v=1&vid=%3Cscript%3E", nil, http.StatusBadRequest},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			_, resp, err := websocket.DefaultDialer.Dial(n.url+tt.path, tt.header)
			if err == nil || resp == nil || resp.StatusCode != tt.status {
				t.Fatalf("got %v, %v; want HTTP %d", resp, err, tt.status)
			}
		})
	}
	t.Run("same origin allowed", func(t *testing.T) {
		c := dial(t, n.url+"/v1/track", http.Header{"Origin": {httpURL}})
		c.Close()
	})
	t.Run("origin the site allows", func(t *testing.T) {
		c := dial(t, n.url+"/v1/track?site=shop", http.Header{"Origin": {"https://shop.example"}})
		c.Close()
	})

	closed := []struct {
		name   string
		path   string
		kind   int
		frame  string
		code   int
		reason string
	}{
		{"oversized frame", "/v1/track", websocket.TextMessage, `{"id":"` + strings.Repeat("a", 2000) + `","x":1,"y":1}`, websocket.CloseMessageTooBig, ""},
		{"malformed json", "/v1/track", websocket.TextMessage, `{"id":`, websocket.CloseInvalidFramePayloadData, "invalid frame: not a JSON object"},
		{"classic frame without y", "/v1/track", websocket.TextMessage, `{"id":"u","x":1}`, websocket.CloseInvalidFramePayloadData, `invalid frame: want {"id":string`},
		{"binary frame", "/v1/track", websocket.BinaryMessage, `{}`, websocket.CloseUnsupportedData, "text frames only"},
		{"batch on a classic connection", "/v1/track", websocket.TextMessage, `{"type":"batch","seq":1,"events":[{"k":"move"}]}`, websocket.CloseInvalidFramePayloadData, `unexpected frame type "batch"`},
		{"invalid event kind", "/v1/track?v=1", websocket.TextMessage, `{"type":"batch","seq":1,"events":[{"k":"keydown"}]}`, websocket.CloseInvalidFramePayloadData, `unknown event kind "keydown"`},
	}
	for _, tt := range closed {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, n.url+tt.path, nil)
			if err := c.WriteMessage(tt.kind, []byte(tt.frame)); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			for {
				_, _, err := c.ReadMessage()
				if err == nil {
					continue // the hello
				}
				ce, ok := err.(*websocket.CloseError)
				if !ok || ce.Code != tt.code || !strings.Contains(ce.Text, tt.reason) {
					t.Fatalf("got %v, want close %d with %q", err, tt.code, tt.reason)
				}
				return
			}
		})
	}

	// After all that, a good client is still served.
	c := dial(t, n.url+"/v1/track?v=1", nil)
	var hello struct{ Type string }
	readType(t, c, &hello)
	_ = c.WriteJSON(batch(1, 1))
	var ack struct{ Seq uint64 }
	readType(t, c, &ack)
	if ack.Seq != 1 {
		t.Fatalf("ack %+v", ack)
	}
}

func TestClassicBatchesAndShutdownFlush(t *testing.T) {
	tests := []struct {
		name       string
		perSecond  int
		wantStored int
	}{
		{"all frames in one batch", 0, 30},
		// Classic clients cannot re-send, so frames over the rate limit
		// (burst: ten seconds' worth) are dropped.
		{"frames over the rate limit dropped", 1, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A long flush interval: only Shutdown publishes.
			n := startNode(t, func(c *Config) {
				c.BatchInterval = time.Hour
				c.MaxConnEventsPerSecond = tt.perSecond
			})
			c := dial(t, n.url+"/", nil)
			for i := range 30 {
				_ = c.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, `{"id":"v%d","x":%d,"y":0}`, i%3, i))
			}
			// The server has read all frames once it answers a ping after them.
			pong := make(chan struct{})
			c.SetPongHandler(func(string) error { close(pong); return nil })
			_ = c.WriteControl(websocket.PingMessage, nil, time.Now().Add(time.Second))
			go func() { _, _, _ = c.ReadMessage() }()
			select {
			case <-pong:
			case <-time.After(5 * time.Second):
				t.Fatal("no pong")
			}
			if err := n.srv.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			var events, messages int
			for _, m := range n.messages(t) {
				if strings.HasPrefix(m.Subject, "activity.") {
					for _, b := range decodeBatches(t, m.Data) {
						events += len(b.Events)
					}
					messages++
				}
			}
			if events != tt.wantStored || messages != 1 {
				t.Errorf("stored %d events in %d messages, want %d in 1", events, messages, tt.wantStored)
			}
		})
	}
}
