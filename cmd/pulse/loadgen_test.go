package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pulse-analytics/pulse/loadgen"
)

// TestLoadgenMeasuresPulse runs pulse loadgen's trackers and SSE consumers
// against Pulse in this process: every event sent is counted, and every
// one reaches every consumer with a latency under the aggregation tick and
// some slack, every tracker's arrival and departure are counted, batched
// trackers' hellos are timed, and the server's CPU time is accounted.
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
		// Every tracker is one visitor: its arrival and its departure
		// are counted once each.
		if r.Joined != uint64(r.Connected) || r.Left != uint64(r.Connected) {
			t.Errorf("batched %v: %d trackers, %d arrivals and %d departures counted", batched, r.Connected, r.Joined, r.Left)
		}
		if batched && (r.Hello.Events != r.Connected || r.Hello.P50 <= 0 || r.Hello.Max > 10_000) {
			t.Errorf("batched: hellos %+v of %d trackers", r.Hello, r.Connected)
		}
		if r.ServerCPUSystemSeconds <= 0 || r.ServerCPUSystemSeconds > r.ServerCPUSeconds {
			t.Errorf("batched %v: %v s of the server's %v s in the kernel", batched, r.ServerCPUSystemSeconds, r.ServerCPUSeconds)
		}
		if r.ServerCPUSeconds <= 0 || r.ServerRSSMegabytes <= 0 || r.ServerCPUPerEventSent <= 0 {
			t.Errorf("batched %v: server figures %v s (%v us per event sent after the ramp), %v MB",
				batched, r.ServerCPUSeconds, r.ServerCPUPerEventSent, r.ServerRSSMegabytes)
		}
	}
}

// TestLoadgenOverSites spreads the trackers over three registered sites:
// the count is the sum of what the aggregator counted for them, every
// event is counted, and the consumers measure the first site's events
// only, each once.
func TestLoadgenOverSites(t *testing.T) {
	dir := t.TempDir()
	sites := filepath.Join(dir, "sites.json")
	if err := os.WriteFile(sites, []byte(`[{"key":"load-0","name":"Load 0","origins":[]},{"key":"load-1","name":"Load 1","origins":[]},{"key":"load-2","name":"Load 2","origins":[]}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	m := startPulse(t, dir, func(c *Config) { c.SitesFile = sites })
	waitReadyz(t, m.DashboardURL, http.StatusOK)
	r, err := loadgen.Run(context.Background(), loadgen.Config{
		URL: m.IngestURL, Site: "load", Sites: 3, Trackers: 9, Rate: 20, Duration: 2 * time.Second, Ramp: 200 * time.Millisecond,
		Batched: true, BatchEvery: 250 * time.Millisecond,
		Dashboard: m.DashboardURL, Password: testPassword, Consumers: 2, MetricsURL: m.MetricsURL,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", r.JSON())
	if r.Sent == 0 || r.Counted != uint64(r.Sent) {
		t.Errorf("sent %d, counted %d", r.Sent, r.Counted)
	}
	// Three of the nine trackers send for load-0, as many as the others.
	if r.Latency.Events != 2*r.Sent/3 {
		t.Errorf("latency of %d events, want %d (load-0's, every consumer)", r.Latency.Events, 2*r.Sent/3)
	}
}

// TestHostileLoadgenAgainstPulse runs pulse loadgen -hostile, scaled down,
// against Pulse in this process: while every kind of attacker runs, the
// good trackers' events are all counted exactly once, new trackers get
// their hellos, and each attack meets the limit meant for it.
func TestHostileLoadgenAgainstPulse(t *testing.T) {
	if testing.Short() {
		t.Skip("runs attackers for seconds")
	}
	dir := t.TempDir()
	sites := filepath.Join(dir, "sites.json")
	if err := os.WriteFile(sites, []byte(`[{"key":"flood","name":"Flood","origins":[]}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	// One address may hold 200 connections that are not trackers yet:
	// more than the SSE flooders need, fewer than the silent holders.
	m := startPulse(t, dir, func(c *Config) { c.SitesFile, c.MaxConnsPerAddr = sites, 200 })
	waitReadyz(t, m.DashboardURL, http.StatusOK)
	r, err := loadgen.RunHostile(context.Background(), loadgen.HostileConfig{
		URL: m.IngestURL, Dashboard: m.DashboardURL, Password: testPassword, MetricsURL: m.MetricsURL,
		Trackers: 30, PingFlooders: 20, HalfFrames: 10, PathFlooders: 5, SSEFlooders: 150, SilentHolders: 400,
		Duration: 4 * time.Second, Ramp: 500 * time.Millisecond, ServerPID: os.Getpid(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s", r.JSON())
	if r.Sent == 0 || r.Counted != uint64(r.Sent) || r.Unacked != 0 {
		t.Errorf("good trackers sent %d, counted %d, %d unacked at the end", r.Sent, r.Counted, r.Unacked)
	}
	if r.Hellos == 0 || r.HelloFailed != 0 {
		t.Errorf("new trackers: %d hellos, %d failed", r.Hellos, r.HelloFailed)
	}
	for _, kind := range []string{"ping", "half_frame", "sse_session", "silent"} {
		if r.Attacks[kind] == 0 {
			t.Errorf("no %s attack got through to the node: %v", kind, r.Attacks)
		}
	}
	if r.ServerRejected[`{reason="rate_limit"}`] == 0 {
		t.Errorf("no ping flooder was closed for its control frames: %v", r.ServerRejected)
	}
	if r.Refused["sse_anonymous"]["401"] == 0 || r.Refused["sse_session"]["429"] == 0 {
		t.Errorf("SSE floods were not refused: %v", r.Refused)
	}
	if r.Refused["silent"]["closed"] == 0 || r.ServerRefusedConns[`{reason="per_addr"}`] == 0 {
		t.Errorf("silent holders beyond their address's limit were not closed at accept: %v, %v", r.Refused["silent"], r.ServerRefusedConns)
	}
	if r.Attacks["silent"] > 200 {
		t.Errorf("one address held %d silent connections, limit 200", r.Attacks["silent"])
	}
	if r.ServerMaxRSSMegabytes <= 0 {
		t.Error("no RSS sampled")
	}
}
