// Package loadgen drives tracker load at an ingest node for benchmarks:
// many WebSocket trackers, ramped up, spread over several loopback source
// addresses, each sending at a set rate in the classic or the batched
// format for a bounded time. It only ever targets loopback addresses and
// always stops by itself.
package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// Config configures a run. Zero fields take the stated defaults.
type Config struct {
	// URL is the ingest node, like http://127.0.0.1:8081. Required; its
	// host must be a loopback address.
	URL string
	// Site is the site the trackers send for. Default "demo".
	Site string
	// Trackers is how many trackers run. Default 100.
	Trackers int
	// Rate is the events per second each tracker sends. Default 10.
	Rate float64
	// Duration bounds the run after the ramp. Default 10 s, at most 10 min.
	Duration time.Duration
	// Ramp spreads the trackers' starts. Default 1 s.
	Ramp time.Duration
	// Batched sends the tracker protocol (batches, acks) instead of
	// classic single-event frames.
	Batched bool
	// BatchEvery is how often a batched tracker sends. Default 1 s.
	BatchEvery time.Duration
	// Sources is how many loopback source addresses (127.0.0.1, .2, …)
	// the trackers are spread over, so that tens of thousands of
	// connections fit in the ephemeral port range. Default 1.
	Sources int
}

// maxDuration bounds any run, whatever it is asked.
const maxDuration = 10 * time.Minute

// Report is what a run measured.
type Report struct {
	Trackers  int     `json:"trackers"`
	Connected int64   `json:"connected"`
	Format    string  `json:"format"`
	Seconds   float64 `json:"seconds"`
	// Sent counts events written; Acked those the server acked (batched
	// format only).
	Sent  int64 `json:"sent"`
	Acked int64 `json:"acked"`
	// Errors counts failed dials and broken connections.
	Errors         int64   `json:"errors"`
	SentPerSecond  float64 `json:"sentPerSecond"`
	AckedPerSecond float64 `json:"ackedPerSecond"`
}

// JSON returns the report as indented JSON.
func (r Report) JSON() string {
	b, _ := json.MarshalIndent(r, "", "  ")
	return string(b)
}

// Run runs the load until cfg.Duration has passed after the ramp or ctx
// ends, and reports.
func Run(ctx context.Context, cfg Config) (Report, error) {
	if err := cfg.defaults(); err != nil {
		return Report{}, err
	}
	u, _ := url.Parse(cfg.URL)
	ws := "ws://" + u.Host + "/v1/track?site=" + url.QueryEscape(cfg.Site)
	format := "classic"
	if cfg.Batched {
		ws += "&v=1"
		format = "batched"
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Ramp+cfg.Duration)
	defer cancel()

	var r struct{ connected, sent, acked, errors atomic.Int64 }
	start := time.Now()
	var wg sync.WaitGroup
	for i := range cfg.Trackers {
		delay := cfg.Ramp * time.Duration(i) / time.Duration(cfg.Trackers)
		wg.Go(func() {
			select {
			case <-time.After(delay):
			case <-ctx.Done():
				return
			}
			d := websocket.Dialer{
				HandshakeTimeout: 10 * time.Second,
				NetDialContext: (&net.Dialer{
					LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%cfg.Sources))},
				}).DialContext,
			}
			conn, _, err := d.DialContext(ctx, ws, nil)
			if err != nil {
				r.errors.Add(1)
				return
			}
			defer conn.Close()
			r.connected.Add(1)
			t := tracker{conn: conn, id: i, cfg: &cfg, sent: &r.sent, acked: &r.acked}
			if err := t.run(ctx); err != nil {
				r.errors.Add(1)
			}
		})
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	return Report{
		Trackers: cfg.Trackers, Connected: r.connected.Load(), Format: format, Seconds: secs,
		Sent: r.sent.Load(), Acked: r.acked.Load(), Errors: r.errors.Load(),
		SentPerSecond: float64(r.sent.Load()) / secs, AckedPerSecond: float64(r.acked.Load()) / secs,
	}, nil
}

func (c *Config) defaults() error {
	u, err := url.Parse(c.URL)
	if err != nil || u.Host == "" {
		return fmt.Errorf("loadgen: url %q: want like http://127.0.0.1:8081", c.URL)
	}
	ip := net.ParseIP(u.Hostname())
	if u.Hostname() == "localhost" {
		ip = net.IPv4(127, 0, 0, 1)
	}
	if ip == nil || !ip.IsLoopback() {
		return errors.New("loadgen: only loopback targets (127.0.0.0/8, ::1, localhost) are allowed")
	}
	if c.Site == "" {
		c.Site = "demo"
	}
	if c.Trackers <= 0 {
		c.Trackers = 100
	}
	if c.Rate <= 0 {
		c.Rate = 10
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	c.Duration = min(c.Duration, maxDuration)
	if c.Ramp <= 0 {
		c.Ramp = time.Second
	}
	if c.BatchEvery <= 0 {
		c.BatchEvery = time.Second
	}
	if c.Sources <= 0 {
		c.Sources = 1
	}
	c.Sources = min(c.Sources, 254)
	return nil
}

// tracker is one simulated visitor.
type tracker struct {
	conn        *websocket.Conn
	id          int
	cfg         *Config
	sent, acked *atomic.Int64
}

func (t *tracker) run(ctx context.Context) error {
	// Closing the connection when the run ends unblocks the reader.
	stop := context.AfterFunc(ctx, func() { t.conn.Close() })
	defer stop()
	if t.cfg.Batched {
		return t.runBatched(ctx)
	}
	every := time.Duration(float64(time.Second) / t.cfg.Rate)
	tick := time.NewTicker(every)
	defer tick.Stop()
	visitor := "load" + strconv.Itoa(t.id)
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		frame := fmt.Appendf(nil, `{"id":%q,"x":%d,"y":%d}`, visitor, n%1280, n%800)
		if err := t.conn.WriteMessage(websocket.TextMessage, frame); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		t.sent.Add(1)
	}
}

func (t *tracker) runBatched(ctx context.Context) error {
	var hello struct{ Type string }
	if err := t.conn.ReadJSON(&hello); err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	// Acks come back on the same connection; count them as they come.
	perBatch := max(1, int(t.cfg.Rate*t.cfg.BatchEvery.Seconds()))
	readErr := make(chan error, 1)
	go func() {
		for {
			var ack struct {
				Type string
				Seq  uint64
			}
			if err := t.conn.ReadJSON(&ack); err != nil {
				readErr <- err
				return
			}
			if ack.Type == "ack" {
				t.acked.Add(int64(perBatch))
			}
		}
	}()
	events := make([]map[string]any, perBatch)
	for i := range events {
		events[i] = map[string]any{"k": "move", "a": 0, "x": i % 1280, "y": i % 800, "vw": 1280, "vh": 800, "p": "/load"}
	}
	tick := time.NewTicker(t.cfg.BatchEvery)
	defer tick.Stop()
	for seq := uint64(1); ; seq++ {
		select {
		case <-ctx.Done():
			return nil
		case err := <-readErr:
			if ctx.Err() != nil {
				return nil
			}
			return err
		case <-tick.C:
		}
		if err := t.conn.WriteJSON(map[string]any{"type": "batch", "seq": seq, "events": events}); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		t.sent.Add(int64(perBatch))
	}
}
