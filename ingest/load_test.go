package ingest

import (
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestLoadLevel(t *testing.T) {
	tests := []struct {
		name  string
		load  float64
		level int
		want  int
	}{
		{"idle stays calm", 0.1, 0, 0},
		{"busy but under the high mark", 0.8, 0, 0},
		{"over the high mark slows down", 0.81, 0, 1},
		{"still over: slower again", 2.5, 1, 2},
		{"capped", 9, maxLevel, maxLevel},
		{"between the marks holds", 0.6, 2, 2},
		{"under the low mark speeds up", 0.39, 2, 1},
		{"calm at level 0 stays", 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := loadLevel(tt.load, tt.level); got != tt.want {
				t.Errorf("loadLevel(%v, %d) = %d, want %d", tt.load, tt.level, got, tt.want)
			}
		})
	}
	cfg := Config{SampleInterval: 50 * time.Millisecond, FlushInterval: time.Second, MaxBatchEvents: 200}
	if r := ratesAt(cfg, 2); r.SampleMs != 200 || r.FlushMs != 4000 || r.MaxBatch != 200 {
		t.Errorf("ratesAt level 2 = %+v", r)
	}
}

// TestRateDirectiveUnderLoad: a node over its capacity tells connected
// trackers to slow down, and new trackers get the slower rates in hello.
func TestRateDirectiveUnderLoad(t *testing.T) {
	n := startNode(t, func(c *Config) {
		c.Capacity = 100 // events a second
		c.LoadInterval = 100 * time.Millisecond
	})
	c := dial(t, n.url+"/v1/track?v=1", nil)
	var hello struct{ SampleMs, FlushMs int }
	readType(t, c, &hello)
	if hello.SampleMs != 50 {
		t.Fatalf("hello %+v", hello)
	}
	// 50 events in well under 100 ms is far over 100 a second.
	_ = c.WriteJSON(batch(1, 50))
	var msg struct {
		Type              string
		Seq               uint64
		SampleMs, FlushMs int
	}
	for msg.Type != "rate" {
		readType(t, c, &msg)
	}
	if msg.SampleMs != 100 || msg.FlushMs != 2000 {
		t.Errorf("rate directive %+v, want sample 100 ms, flush 2000 ms", msg)
	}
	// Calm again: the level falls back and trackers speed up.
	for msg.SampleMs != 50 {
		readType(t, c, &msg)
		if msg.Type != "rate" {
			t.Fatalf("unexpected %+v", msg)
		}
	}
}

func TestConnectionLimits(t *testing.T) {
	n := startNode(t, func(c *Config) {
		c.MaxConnsPerIP = 2
		c.MaxConnEventsPerSecond = 10 // burst 100
	})
	a := dial(t, n.url+"/v1/track?v=1", nil)
	dial(t, n.url+"/v1/track", nil)
	_, resp, err := websocket.DefaultDialer.Dial(n.url+"/v1/track", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("third connection from one address: %v, %v; want 429", resp, err)
	}

	// A tracker over its event rate is closed with 1008; its batch is not
	// acked, so the real tracker re-sends it after reconnecting.
	var hello struct{ Type string }
	readType(t, a, &hello)
	_ = a.WriteJSON(batch(1, 100)) // the burst
	var ack struct{ Seq uint64 }
	readType(t, a, &ack)
	_ = a.WriteJSON(batch(2, 100))
	_, _, err = a.ReadMessage()
	if ce, ok := err.(*websocket.CloseError); !ok || ce.Code != websocket.ClosePolicyViolation || !strings.Contains(ce.Text, "more than 10 events a second") {
		t.Fatalf("got %v, want close 1008", err)
	}
	a.Close()
	// The freed slot can be used again.
	checkConn := func() error {
		c, _, err := websocket.DefaultDialer.Dial(n.url+"/v1/track", nil)
		if err == nil {
			c.Close()
		}
		return err
	}
	deadline := time.Now().Add(5 * time.Second)
	for checkConn() != nil {
		if time.Now().After(deadline) {
			t.Fatal("slot not freed after close")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCallInDistribution: callIns fall in the bucket of their upper edge,
// stops are counted apart, and figures give the interval before the last
// roll, per second.
func TestCallInDistribution(t *testing.T) {
	var c callIns
	for _, d := range []time.Duration{250 * time.Millisecond, time.Second, 1001 * time.Millisecond, 4 * time.Second, 10 * time.Minute} {
		c.add(&d)
	}
	c.add(nil)
	f := map[string]float64{}
	c.figures(f, time.Second)
	if f["callin_le_1s"] != 0 || f["callin_stop"] != 0 {
		t.Fatalf("before the roll: %v, want the empty interval before", f)
	}
	c.roll()
	c.figures(f, 500*time.Millisecond)
	want := map[string]float64{
		"callin_le_1s": 4, "callin_le_2s": 2, "callin_le_5s": 2, "callin_le_10s": 0,
		"callin_le_30s": 0, "callin_le_60s": 0, "callin_le_300s": 0, "callin_gt_300s": 2, "callin_stop": 2,
	}
	if !maps.Equal(f, want) {
		t.Errorf("figures %v, want %v", f, want)
	}
}

// TestFiguresSayWhatTrackersAreTold: a node's figures carry the sampling
// and flush intervals it tells trackers at its load level.
func TestFiguresSayWhatTrackersAreTold(t *testing.T) {
	n := startNode(t, nil)
	f := n.srv.Figures()
	if f["sample_ms"] != 50 || f["flush_ms"] != 1000 || f["load_level"] != 0 {
		t.Errorf("figures %v, want sample_ms 50, flush_ms 1000 at level 0", f)
	}
	n.srv.level.Store(2)
	if f := n.srv.Figures(); f["sample_ms"] != 200 || f["flush_ms"] != 4000 {
		t.Errorf("at level 2: %v, want sample_ms 200, flush_ms 4000", f)
	}
}
