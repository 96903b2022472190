package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pulse-analytics/pulse/ingest"
	"github.com/pulse-analytics/pulse/natsutil/natstest"
	"github.com/pulse-analytics/pulse/store"
)

type sites map[string]store.Site

func (s sites) Site(key string) (store.Site, bool) { v, ok := s[key]; return v, ok }

func TestRunAgainstARealNode(t *testing.T) {
	ns := natstest.Run(t)
	node, err := ingest.New(ingest.Config{Publisher: ns.JS, Sites: sites{"demo": {Key: "demo"}}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(node.Handler())
	defer srv.Close()
	defer func() { _ = node.Shutdown(context.Background()) }()

	for _, batched := range []bool{false, true} {
		r, err := Run(context.Background(), Config{
			URL: srv.URL, Trackers: 20, Rate: 20, Duration: 1500 * time.Millisecond, Ramp: 200 * time.Millisecond,
			Batched: batched, BatchEvery: 250 * time.Millisecond, Sources: 3, ServerPID: os.Getpid(),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s", r.JSON())
		if r.Connected != 20 || r.Errors != 0 || r.Sent < 20*20 {
			t.Errorf("batched %v: %+v", batched, r)
		}
		if batched && (r.Acked == 0 || r.Acked > r.Sent) {
			t.Errorf("acked %d of %d", r.Acked, r.Sent)
		}
		// Like the peers' loadgen, the run measures the server before
		// the trackers leave.
		if r.OpenWhenMeasured != r.Connected {
			t.Errorf("batched %v: %d of %d connections open when the server was measured", batched, r.OpenWhenMeasured, r.Connected)
		}
	}
}

func TestOnlyLoopback(t *testing.T) {
	for _, u := range []string{"http://10.0.0.1:8081", "http://example.com", "http://192.168.1.2", "nonsense"} {
		if _, err := Run(context.Background(), Config{URL: u}); err == nil || !strings.Contains(err.Error(), "loadgen") {
			t.Errorf("%s: %v", u, err)
		}
		for _, c := range []HostileConfig{{URL: u, Dashboard: "http://127.0.0.1:2112"}, {URL: "http://127.0.0.1:8081", Dashboard: u}} {
			if _, err := RunHostile(context.Background(), c); err == nil || !strings.Contains(err.Error(), "loadgen") {
				t.Errorf("hostile %+v: %v", c, err)
			}
		}
	}
}

func TestScrapeReadsSeriesByLabels(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `# HELP pulse_ingest_rejected_total Refused.
pulse_ingest_rejected_total{reason="rate_limit"} 12
pulse_ingest_rejected_total{reason="frame_timeout"} 3
pulse_ingest_rejected_totally_else 9
pulse_quote_upstream_fetches_total 4
`)
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	got, err := scrape(context.Background(), u, "pulse_ingest_rejected_total")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{`{reason="rate_limit"}`: 12, `{reason="frame_timeout"}`: 3}
	if !maps.Equal(got, want) {
		t.Errorf("scrape: %v, want %v", got, want)
	}
	if n, err := upstreamFetches(context.Background(), u); err != nil || n != 4 {
		t.Errorf("upstream fetches %v %v, want 4", n, err)
	}
}

// TestCentrifugoTarget runs batched trackers against a local server that
// speaks Centrifugo's JSON client protocol as its documentation gives it:
// a connect reply, a reply to each publish, two replies in one frame when
// they come together, and a ping ({}) that the client must answer ({}).
// Every batch sent is acked by its reply, and the ping is answered.
func TestCentrifugoTarget(t *testing.T) {
	var pongs, badChannel atomic.Int64
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/connection/websocket" {
			http.NotFound(w, r)
			return
		}
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		var held []string // a reply waiting for the next, to share its frame
		for {
			_, data, err := c.ReadMessage()
			if err != nil {
				return
			}
			var cmd struct {
				ID      uint64          `json:"id"`
				Connect json.RawMessage `json:"connect"`
				Publish *struct {
					Channel string          `json:"channel"`
					Data    json.RawMessage `json:"data"`
				} `json:"publish"`
			}
			if err := json.Unmarshal(data, &cmd); err != nil {
				return
			}
			switch {
			case cmd.Connect != nil:
				_ = c.WriteMessage(websocket.TextMessage, []byte(`{"id":1,"connect":{"client":"c1","version":"6.9.1","ping":25,"pong":true}}`))
				_ = c.WriteMessage(websocket.TextMessage, []byte(`{}`))
			case cmd.Publish != nil:
				if cmd.Publish.Channel != "track:demo" || !strings.HasPrefix(string(cmd.Publish.Data), `{"type":"batch"`) {
					badChannel.Add(1)
				}
				held = append(held, fmt.Sprintf(`{"id":%d,"publish":{}}`, cmd.ID))
				if len(held) == 2 {
					_ = c.WriteMessage(websocket.TextMessage, []byte(strings.Join(held, "\n")))
					held = held[:0]
				}
			case cmd.ID == 0:
				pongs.Add(1)
			}
		}
	}))
	defer srv.Close()
	r, err := Run(context.Background(), Config{
		URL: srv.URL, Target: TargetCentrifugo, Batched: true, Trackers: 3, Rate: 20,
		BatchEvery: 100 * time.Millisecond, Duration: time.Second, Ramp: 10 * time.Millisecond, Settle: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	// A tracker's last reply may wait in the server for a second one.
	if r.Connected != 3 || r.Errors != 0 || r.Sent == 0 || r.Acked < r.Sent-3*2 || r.Counted != uint64(r.Acked) {
		t.Errorf("report %+v", r)
	}
	if pongs.Load() != 3 || badChannel.Load() != 0 {
		t.Errorf("%d pongs for 3 pings, %d publishes not a batch to track:demo", pongs.Load(), badChannel.Load())
	}
}

func TestTargetsTakeBatches(t *testing.T) {
	for _, c := range []Config{
		{URL: "http://127.0.0.1:1", Target: TargetFloor},
		{URL: "http://127.0.0.1:1", Target: TargetCentrifugo, Batched: true, Dashboard: "http://127.0.0.1:2"},
		{URL: "http://127.0.0.1:1", Target: "nats", Batched: true},
	} {
		if _, err := Run(context.Background(), c); err == nil || !strings.Contains(err.Error(), "target") {
			t.Errorf("%+v: %v, want a refusal", c, err)
		}
	}
}
