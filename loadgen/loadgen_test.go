package loadgen

import (
	"context"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

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
