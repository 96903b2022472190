package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/sync/errgroup"

	"github.com/pulse-analytics/pulse/event"
	"github.com/pulse-analytics/pulse/natsutil/natstest"
)

// TestEndToEnd runs the all-in-one system, connects many real WebSocket
// clients of both kinds, and checks that the aggregator's counts (through
// the API) and the SSE stream's updates match exactly what was sent.
func TestEndToEnd(t *testing.T) {
	m := startPulse(t, t.TempDir(), nil)

	// Follow the SSE stream from the start, as a browser would.
	web := login(t, m.DashboardURL)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", m.DashboardURL+"/sse?site=demo", nil)
	resp, err := web.Do(req)
	if err != nil {
		t.Fatalf("sse: %v", err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "text/event-stream" {
		t.Fatalf("sse: %s, %s", resp.Status, ct)
	}
	overviews := make(chan event.Overview, 1024)
	go func() {
		defer close(overviews)
		for ev := range readSSE(resp.Body) {
			if ev.Event != "overview" {
				continue
			}
			var u struct {
				Overview  event.Overview    `json:"panel"`
				Charts    map[string]any    `json:"charts"`
				Fragments map[string]string `json:"fragments"`
			}
			if err := json.Unmarshal([]byte(ev.Data), &u); err != nil {
				t.Errorf("sse data: %v", err)
				return
			}
			if ev.ID != fmt.Sprint(u.Overview.Version) || u.Charts["events-per-second"] == nil || u.Fragments["stats"] == "" {
				t.Errorf("sse event incomplete: id %q, version %d, charts %d, fragments %d", ev.ID, u.Overview.Version, len(u.Charts), len(u.Fragments))
			}
			overviews <- u.Overview
		}
	}()

	const (
		classicClients = 40
		classicFrames  = 50
		trackers       = 10
		batches        = 5
		batchSize      = 20
	)
	wsBase := "ws" + strings.TrimPrefix(m.IngestURL, "http")
	var conns []*websocket.Conn
	var mu sync.Mutex
	keep := func(c *websocket.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	var g errgroup.Group
	for i := range classicClients {
		g.Go(func() error {
			// Half connect the way older clients do: on "/" with the
			// "json" subprotocol.
			u, d := wsBase+"/v1/track", *websocket.DefaultDialer
			if i%2 == 1 {
				u, d.Subprotocols = wsBase+"/", []string{"json"}
			}
			c, _, err := d.Dial(u, nil)
			if err != nil {
				return err
			}
			keep(c)
			for j := range classicFrames {
				frame := fmt.Sprintf(`{"id":"user%d","x":%d,"y":%d}`, i, j, j*2)
				if err := c.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	for range trackers {
		g.Go(func() error {
			c, err := dialProtocol(wsBase)
			if err != nil {
				return err
			}
			keep(c)
			for seq := uint64(1); seq <= batches; seq++ {
				if err := sendAcked(c, seq, "click", batchSize); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	const (
		moves  = classicClients * classicFrames
		clicks = trackers * batches * batchSize
		total  = moves + clicks
		people = classicClients + trackers
	)

	ov := waitStats(t, m.DashboardURL, "demo", func(ov event.Overview) error {
		if ov.Events != total || ov.Visitors != people {
			return fmt.Errorf("events %d, visitors %d; want %d, %d", ov.Events, ov.Visitors, total, people)
		}
		return nil
	})
	if ov.ByKind["move"] != moves || ov.ByKind["click"] != clicks {
		t.Errorf("by kind %v, want move %d, click %d", ov.ByKind, moves, clicks)
	}
	if ov.Arrivals != people {
		t.Errorf("arrivals %d, want %d", ov.Arrivals, people)
	}
	var perSecond uint64
	for _, p := range ov.PerSecond {
		perSecond += p.N
	}
	if perSecond > total {
		t.Errorf("per-second series sums to %d, more than the %d events sent", perSecond, total)
	}
	if len(ov.TopVisitors) == 0 || ov.TopVisitors[0].Events < classicFrames {
		t.Errorf("top visitors %+v: want the most active with at least %d events", ov.TopVisitors, classicFrames)
	}
	waitSSE(t, overviews, func(o event.Overview) bool { return o.Events == total && o.Visitors == people })

	// The metrics listener has the counters of every part; the public
	// listeners answer health checks but show no figures.
	body := get(t, m.MetricsURL+"/metrics")
	for _, want := range []string{
		fmt.Sprintf(`pulse_ingest_events_total{kind="move",site="demo"} %d`, moves),
		fmt.Sprintf(`pulse_ingest_events_total{kind="click",site="demo"} %d`, clicks),
		fmt.Sprintf(`pulse_aggregator_events_total{site="demo"} %d`, total),
		"pulse_dashboard_sse_clients 1",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("%s/metrics lacks %q", m.MetricsURL, want)
		}
	}
	for _, base := range []string{m.IngestURL, m.DashboardURL, m.MetricsURL} {
		if r := get(t, base+"/readyz"); r != "ready\n" {
			t.Errorf("%s/readyz: %q", base, r)
		}
	}
	for _, base := range []string{m.IngestURL, m.DashboardURL} {
		resp, err := http.Get(base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), "pulse_") {
			t.Errorf("public %s/metrics shows figures: %s %.100s", base, resp.Status, b)
		}
	}

	// Everyone leaves: presence must fall to zero, counts stay.
	for _, c := range conns {
		_ = c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"))
		c.Close()
	}
	waitStats(t, m.DashboardURL, "demo", func(ov event.Overview) error {
		if ov.Visitors != 0 || ov.Departures != people || ov.Events != total {
			return fmt.Errorf("visitors %d, departures %d, events %d", ov.Visitors, ov.Departures, ov.Events)
		}
		return nil
	})
	waitSSE(t, overviews, func(o event.Overview) bool { return o.Visitors == 0 && o.Events == total })
}

func waitSSE(t *testing.T, overviews <-chan event.Overview, ok func(event.Overview) bool) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	var last event.Overview
	for {
		select {
		case o, open := <-overviews:
			if !open {
				t.Fatalf("sse stream ended; last overview %+v", last)
			}
			if ok(o) {
				return
			}
			last = o
		case <-timeout:
			t.Fatalf("no matching SSE update; last: events %d, visitors %d", last.Events, last.Visitors)
		}
	}
}

func dialProtocol(wsBase string) (*websocket.Conn, error) {
	c, _, err := websocket.DefaultDialer.Dial(wsBase+"/v1/track?v=1&site=demo", nil)
	if err != nil {
		return nil, err
	}
	var hello struct{ Type string }
	if err := c.ReadJSON(&hello); err != nil || hello.Type != "hello" {
		return nil, fmt.Errorf("hello: %q, %v", hello.Type, err)
	}
	return c, nil
}

func sendAcked(c *websocket.Conn, seq uint64, kind string, n int) error {
	events := make([]map[string]any, n)
	for i := range events {
		events[i] = map[string]any{"k": kind, "a": 5, "x": i, "y": i, "vw": 1280, "vh": 720, "p": "/"}
	}
	if err := c.WriteJSON(map[string]any{"type": "batch", "seq": seq, "events": events}); err != nil {
		return err
	}
	var ack struct {
		Type string
		Seq  uint64
	}
	if err := c.ReadJSON(&ack); err != nil {
		return err
	}
	if ack.Type != "ack" || ack.Seq != seq {
		return fmt.Errorf("got %+v, want ack of %d", ack, seq)
	}
	return nil
}

// TestRestartKeepsExactCounts stops the system right after trackers' batches
// are acked and starts it again on the same data: the counts must be exact,
// from the snapshot plus the stream replayed after it. A re-sent batch after
// the restart must not count twice.
func TestRestartKeepsExactCounts(t *testing.T) {
	dir := t.TempDir()
	m := startPulse(t, dir, nil)
	tc := dialTracker(t, m.IngestURL, "demo", "")
	for seq := uint64(1); seq <= 10; seq++ {
		tc.sendBatch(t, seq, "scroll", 7)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	// The server told the tracker to reconnect with 1012.
	if _, _, err := tc.ws.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseServiceRestart) {
		t.Errorf("tracker got %v, want close 1012", err)
	}

	m2 := startPulse(t, dir, nil)
	// The tracker resumes its session and re-sends its last batch, whose
	// ack it might have missed, then sends a new one.
	tc2 := dialTracker(t, m2.IngestURL, "demo", tc.session)
	tc2.sendBatch(t, 10, "scroll", 7)
	tc2.sendBatch(t, 11, "scroll", 7)
	waitStats(t, m2.DashboardURL, "demo", func(ov event.Overview) error {
		if ov.Events != 11*7 || ov.ByKind["scroll"] != 11*7 {
			return fmt.Errorf("events %d (%v), want %d", ov.Events, ov.ByKind, 11*7)
		}
		return nil
	})
}

// TestSeparateProcessParts runs ingest, aggregator and dashboard as separate
// parts against a NATS URL, the way `pulse ingest|aggregator|dashboard` do.
func TestSeparateProcessParts(t *testing.T) {
	ns := natstest.Run(t)
	var parts = map[string]*Main{}
	for _, mode := range []string{ModeAggregator, ModeIngest, ModeDashboard} {
		parts[mode] = startPulse(t, t.TempDir(), func(c *Config) {
			c.Mode = mode
			c.NATSURL = ns.URL()
		})
	}
	urls := []string{parts[ModeIngest].IngestURL, parts[ModeDashboard].DashboardURL, parts[ModeAggregator].MetricsURL}
	for _, u := range urls {
		waitReadyz(t, u, http.StatusOK)
	}
	tc := dialTracker(t, parts[ModeIngest].IngestURL, "demo", "")
	tc.sendBatch(t, 1, "move", 33)
	waitStats(t, parts[ModeDashboard].DashboardURL, "demo", func(ov event.Overview) error {
		if ov.Events != 33 || ov.Visitors != 1 {
			return fmt.Errorf("events %d, visitors %d", ov.Events, ov.Visitors)
		}
		return nil
	})

	// Without NATS no part is ready, though each still answers /healthz.
	ns.NS.Shutdown()
	for _, u := range urls {
		waitReadyz(t, u, http.StatusServiceUnavailable)
		if body := get(t, u+"/healthz"); body != "ok\n" {
			t.Errorf("%s/healthz: %q", u, body)
		}
	}
}

// TestIngestNodesShareAddress runs two ingest processes' parts on one
// address with -ingest-reuse-port: the kernel spreads trackers over both,
// every tracker is counted, and when one node stops the other goes on
// taking new trackers. Without the option a second node cannot listen.
func TestIngestNodesShareAddress(t *testing.T) {
	ns := natstest.Run(t)
	part := func(mode, addr string, reuse bool) func(*Config) {
		return func(c *Config) {
			c.Mode, c.NATSURL = mode, ns.URL()
			c.IngestReusePort = reuse
			if addr != "" {
				c.IngestAddr = addr
			}
		}
	}
	startPulse(t, t.TempDir(), part(ModeAggregator, "", false))
	dash := startPulse(t, t.TempDir(), part(ModeDashboard, "", false))
	first := startPulse(t, t.TempDir(), part(ModeIngest, "", true))
	addr := strings.TrimPrefix(first.IngestURL, "http://")
	second := startPulse(t, t.TempDir(), part(ModeIngest, addr, true))
	if second.IngestURL != first.IngestURL {
		t.Fatalf("second node listens at %s, want %s", second.IngestURL, first.IngestURL)
	}

	lone := newTestMain(t, t.TempDir(), part(ModeIngest, addr, false))
	err := lone.Run(context.Background())
	_ = lone.Close()
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("a node without -ingest-reuse-port on a shared address: %v, want address already in use", err)
	}

	// 40 trackers: the chance that the kernel's hash puts all of them on
	// one node is 2^-39.
	const trackers = 40
	for range trackers {
		dialTracker(t, first.IngestURL, "demo", "").sendBatch(t, 1, "move", 1)
	}
	for _, m := range []*Main{first, second} {
		if n := m.ingest.Figures()["connections"]; n == 0 || n == trackers {
			t.Errorf("a node holds %v of %d trackers, want some", n, trackers)
		}
	}
	if err := second.Close(); err != nil {
		t.Fatalf("close the second node: %v", err)
	}
	for range 10 {
		dialTracker(t, first.IngestURL, "demo", "").sendBatch(t, 1, "move", 1)
	}
	waitStats(t, dash.DashboardURL, "demo", func(ov event.Overview) error {
		if ov.Events != trackers+10 {
			return fmt.Errorf("events %d, want %d", ov.Events, trackers+10)
		}
		return nil
	})
}

// waitReadyz waits until base/readyz answers status.
func waitReadyz(t *testing.T, base string, status int) {
	t.Helper()
	checkFor(t, 60*time.Second, 20*time.Millisecond, func() error {
		_, err := readyzIs(base, status)
		return err
	})
}

// readyzIs reads base/readyz: its body, or an error unless its status is
// status.
func readyzIs(base string, status int) (string, error) {
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		return "", fmt.Errorf("%s/readyz: %s (%s), want %d", base, resp.Status, b, status)
	}
	return string(b), nil
}

func TestParseFlags(t *testing.T) {
	env := map[string]string{
		"PULSE_INGEST_ADDR":    ":9001",
		"PULSE_DATA_DIR":       "/var/lib/pulse",
		"PULSE_ADMIN_PASSWORD": "from-env",
	}
	m := NewMain()
	if err := m.ParseFlags([]string{"ingest", "-nats", "nats://127.0.0.1:4222", "-data-dir", "/tmp/x"}, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	c := m.Config
	if c.Mode != ModeIngest || c.IngestAddr != ":9001" || c.DataDir != "/tmp/x" || c.AdminPassword != "from-env" ||
		c.NATSURL != "nats://127.0.0.1:4222" || c.DashboardAddr != ":2112" {
		t.Errorf("config %+v", c)
	}
	for _, args := range [][]string{{"aggregator"}, {"bogus"}, {"-no-such-flag"}, {"all", "extra"}} {
		if err := NewMain().ParseFlags(args, func(string) string { return "" }); err == nil {
			t.Errorf("ParseFlags(%q) accepted", args)
		}
	}
}

// TestGCPercentFor: an ingest node collects at 50 unless GOGC is set;
// other modes keep Go's default.
func TestGCPercentFor(t *testing.T) {
	tests := []struct {
		mode, gogc string
		want       int
		set        bool
	}{
		{ModeIngest, "", ingestGCPercent, true},
		{ModeIngest, "200", 0, false},
		{ModeIngest, "off", 0, false},
		{ModeAll, "", 0, false},
		{ModeAggregator, "", 0, false},
		{ModeDashboard, "", 0, false},
	}
	for _, tt := range tests {
		got, set := gcPercentFor(tt.mode, func(k string) string {
			if k == "GOGC" {
				return tt.gogc
			}
			return ""
		})
		if got != tt.want || set != tt.set {
			t.Errorf("%s with GOGC=%q: %d, %v; want %d, %v", tt.mode, tt.gogc, got, set, tt.want, tt.set)
		}
	}
}
