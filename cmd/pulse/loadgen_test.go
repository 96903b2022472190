package main

import (
	"context"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/pulse-analytics/pulse/loadgen"
)

// TestLoadgenMeasuresPulse runs pulse loadgen's trackers and SSE consumers
// against Pulse in this process: every event sent is counted, and every
// one reaches every consumer with a latency under the aggregation tick and
// some slack, and the server's CPU time is accounted.
func TestLoadgenMeasuresPulse(t *testing.T) {
	m := startPulse(t, t.TempDir(), nil)
	waitReadyz(t, m.DashboardURL, http.StatusOK)
	for _, batched := range []bool{false, true} {
		r, err := loadgen.Run(context.Background(), loadgen.Config{
			URL: m.IngestURL, Trackers: 20, Rate: 20, Duration: 2 * time.Second, Ramp: 200 * time.Millisecond,
			Batched: batched, BatchEvery: 250 * time.Millisecond, Sources: 2,
			Dashboard: m.DashboardURL, Password: testPassword, Consumers: 3, ServerPID: os.Getpid(),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s", r.JSON())
		if r.Sent == 0 || r.Counted != uint64(r.Sent) || r.CountedRatio != 1 {
			t.Errorf("batched %v: sent %d, counted %d", batched, r.Sent, r.Counted)
		}
		if r.Latency.Events != 3*r.Sent {
			t.Errorf("batched %v: latency of %d events, want %d (every event, every consumer)", batched, r.Latency.Events, 3*r.Sent)
		}
		if r.Latency.P50 <= 0 || r.Latency.P50 > r.Latency.P99 || r.Latency.Max > 10_000 {
			t.Errorf("batched %v: implausible latency %+v", batched, r.Latency)
		}
		if r.OpenWhenMeasured != r.Connected {
			t.Errorf("batched %v: %d of %d connections open when the server was measured", batched, r.OpenWhenMeasured, r.Connected)
		}
		if r.ServerCPUSeconds <= 0 || r.ServerRSSMegabytes <= 0 || r.ServerCPUPerEventSent <= 0 {
			t.Errorf("batched %v: server figures %v s (%v us per event sent after the ramp), %v MB",
				batched, r.ServerCPUSeconds, r.ServerCPUPerEventSent, r.ServerRSSMegabytes)
		}
	}
}
