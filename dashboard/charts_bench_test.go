package dashboard

import (
	"context"
	"fmt"
	"testing"

	"github.com/pulse-analytics/pulse/event"
)

// busyOverview is an overview of a busy site: every chart full, five pages
// with hundreds of heatmap cells each.
func busyOverview() event.Overview {
	const now = 1_763_790_000_000
	ov := event.Overview{Site: "demo", Version: 7, Events: 1e6, Visitors: 1000, Updated: now,
		ByKind: map[string]uint64{"move": 9e5, "click": 5e4, "scroll": 5e4}, PerSecondByKind: map[string][]uint64{}}
	for _, k := range []string{"move", "click", "scroll"} {
		ov.PerSecondByKind[k] = make([]uint64, 60)
	}
	for i := range 60 {
		ov.PerSecond = append(ov.PerSecond, event.Point{T: now - int64(60-i)*1000, N: 20000})
		ov.PerSecondByKind["move"][i] = 18000
		ov.PerSecondByKind["click"][i] = 1000
		ov.PerSecondByKind["scroll"][i] = 1000
		ov.PerMinute = append(ov.PerMinute, event.MinutePoint{T: now - int64(60-i)*60_000, Events: 1.2e6, Arrivals: 50, Departures: 48,
			ByKind: map[string]uint64{"move": 1e6, "click": 1e5, "scroll": 1e5}})
	}
	for i := range 144 {
		ov.Day = append(ov.Day, event.Point{T: now - int64(144-i)*600_000, N: 1e7})
	}
	for i := range 10 {
		ov.TopVisitors = append(ov.TopVisitors, event.VisitorCount{Visitor: fmt.Sprintf("visitor-%d", i), Events: uint64(1000 - i), LastSeen: now})
	}
	for p := range 5 {
		page := event.PageStats{Path: fmt.Sprintf("/page/%d", p), Visitors: 200, Events: 2e5, Clicks: 1e4, PageViews: 300,
			ScrollReached: [10]uint64{300, 280, 250, 200, 150, 120, 90, 60, 30, 10}, PerMinute: ov.PerMinute}
		for c := range 400 {
			cell := event.HeatCell{Col: c % event.HeatCols, Row: c / event.HeatCols, N: uint64(c)}
			page.ClickHeat = append(page.ClickHeat, cell)
			page.MoveHeat = append(page.MoveHeat, cell)
		}
		ov.Pages = append(ov.Pages, page)
	}
	return ov
}

// BenchmarkEncodeUpdate is what a site's overview costs the dashboard on
// every tick: `go test -run '^$' -bench EncodeUpdate -benchmem ./dashboard`.
func BenchmarkEncodeUpdate(b *testing.B) {
	ov := busyOverview()
	b.ReportAllocs()
	var size int
	for b.Loop() {
		u, err := encodeUpdate(context.Background(), ov, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		size = len(u.frame)
	}
	b.ReportMetric(float64(size), "bytes/update")
}
