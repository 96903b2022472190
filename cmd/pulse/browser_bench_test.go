package main

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// BenchmarkBrowserEventToScreen measures, in Chromium, how long a
// tracker's event takes to show on the site page: a tracker sends one
// batch at a time, and the page records (with a MutationObserver, on its
// own clock, which is this machine's) when its events counter first shows
// the new total; the live panel also redraws the events-per-second chart
// then (setOption). Reports the median and the 99th percentile:
// `go test -run '^$' -bench BrowserEventToScreen -benchtime 40x ./cmd/pulse`.
func BenchmarkBrowserEventToScreen(b *testing.B) {
	ctx := browser(b)
	m := startPulse(b, b.TempDir(), nil)
	logInToSite(b, ctx, m.DashboardURL, false)
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
