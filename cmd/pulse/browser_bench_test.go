package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/pulse-analytics/pulse/loadgen"
)

// BenchmarkBrowserEventToScreen measures, in Chromium, how long a
// tracker's event takes to show on the site page: a tracker sends one
// batch at a time, and the page records (with a MutationObserver, on its
// own clock, which is this machine's) when its events counter first shows
// the new total; the live panel also redraws the events-per-second chart
// then (setOption). Reports the median and the 99th percentile:
// `go test -run '^$' -bench BrowserEventToScreen -benchtime 40x ./cmd/pulse`.
//
// idle: nothing else runs. under-load: pulse loadgen, in this process,
// keeps the node at 50,000 events/s (1,000 batched trackers × 50/s) for
// another site, whose stream 100 SSE consumers read, so the node, NATS
// and the aggregator are as busy as in bench/run.sh live while the page
// watches the demo site, whose counter moves only with the measured
// tracker's events.
func BenchmarkBrowserEventToScreen(b *testing.B) {
	b.Run("idle", func(b *testing.B) { benchEventToScreen(b, false) })
	b.Run("under-load", func(b *testing.B) { benchEventToScreen(b, true) })
}

func benchEventToScreen(b *testing.B, underLoad bool) {
	ctx := browser(b)
	dir := b.TempDir()
	sites := filepath.Join(dir, "sites.json")
	if err := os.WriteFile(sites, []byte(`[{"key":"load","name":"Load","origins":[]}]`), 0o600); err != nil {
		b.Fatal(err)
	}
	m := startPulse(b, dir, func(c *Config) {
		c.SitesFile = sites
		c.IngestCapacity = 1_000_000 // no rate directives: the load stays at 50,000/s
	})
	logInToSite(b, ctx, m.DashboardURL, false)
	// The load starts once the page is open: it measures the updates, not
	// a page load on a saturated machine.
	if underLoad {
		loadCtx, stopLoad := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			r, err := loadgen.Run(loadCtx, loadgen.Config{
				URL: m.IngestURL, Site: "load", Trackers: 1000, Rate: 50, Batched: true, Sources: 4,
				Duration: 10 * time.Minute, Ramp: 2 * time.Second, Settle: time.Second,
				Dashboard: m.DashboardURL, Password: testPassword, Consumers: 100,
			})
			if err == nil && r.Errors > 0 {
				err = fmt.Errorf("%d trackers failed", r.Errors)
			}
			b.Logf("background load: %.0f events/s sent", r.SentPerSecond)
			done <- err
		}()
		b.Cleanup(func() {
			stopLoad()
			if err := <-done; err != nil {
				b.Errorf("background load: %v", err)
			}
		})
		time.Sleep(3 * time.Second) // the ramp, and a second of full load
	}
	// The counter's element is replaced with each overview's fragment, so
	// the observer watches the fragment's container.
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`(() => {
		window.__shown = [];
		const box = document.querySelector('[data-fragment=stats]');
		let last = -1;
		const look = () => {
			const n = +(box.querySelector('[data-testid=events-total]') || {textContent: ''}).textContent.replace(/\D/g, '');
			if (n !== last) { last = n; window.__shown.push([Date.now(), n]); }
		};
		new MutationObserver(look).observe(box, {childList: true, subtree: true, characterData: true});
		look();
	})()`)); err != nil {
		b.Fatal(err)
	}
	tracker, err := dialProtocol(wsURL(m.IngestURL))
	if err != nil {
		b.Fatal(err)
	}
	defer tracker.Close()
	const perBatch = 5
	sentAt := make([]int64, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		events := make([]map[string]any, perBatch)
		for j := range events {
			events[j] = map[string]any{"k": "move", "a": 0, "x": j, "y": i % 500, "vw": 1280, "vh": 720, "p": "/"}
		}
		sentAt = append(sentAt, time.Now().UnixMilli())
		if err := tracker.WriteJSON(map[string]any{"type": "batch", "seq": i + 1, "events": events}); err != nil {
			b.Fatal(err)
		}
		want := strconv.Itoa((i + 1) * perBatch)
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`window.__shown.some(s => s[1] >= `+want+`)`, chromedp.WithPollingTimeout(10*time.Second))); err != nil {
			b.Fatalf("the page never showed %s events: %v", want, err)
		}
	}
	b.StopTimer()
	shown, err := chromedp.Run(ctx, chromedp.Evaluate[[][2]int64](`window.__shown`))
	if err != nil {
		b.Fatal(err)
	}
	lat := make([]int64, len(sentAt))
	for i, at := range sentAt {
		for _, s := range shown {
			if s[1] >= int64((i+1)*perBatch) {
				lat[i] = s[0] - at
				break
			}
		}
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100]), "p99-ms")
}
