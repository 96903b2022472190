package dashboard

import (
	"strconv"

	"github.com/go-echarts/go-echarts/v2/charts"
	"github.com/go-echarts/go-echarts/v2/opts"

	"github.com/pulse-analytics/pulse/event"
)

// Charts are echarts option objects built with go-echarts. A page renders
// each whole on first load and SSE sends it again on every update; chart
// and series ids are fixed so that the browser's setOption merges an update
// into the chart in place instead of adding a new one.

// Chart ids of a site page.
const (
	chartEventsPerSecond = "events-per-second"
	chartEventsPerMinute = "events-per-minute"
	chartPresence        = "arrivals-departures"
	chartDay             = "events-day"
	chartClickHeat       = "click-heat"
	chartMoveHeat        = "move-heat"
	chartScrollDepth     = "scroll-depth"
	chartPageActivity    = "page-activity"
)

// pairs is a series' data as [x, y] pairs, which echarts takes as they
// are. go-echarts' own data types box every number in an interface
// ({"value": []any{x, y}}), and encoding those was half of what an update
// cost (BenchmarkEncodeUpdate); a series is therefore added without data,
// and setData gives it its points in a plain form.
type pairs [][2]int64

// setData sets the data of the series added last.
func setData(series charts.MultiSeries, data any) { series[len(series)-1].Data = data }

// minutePairs returns the [minute, value] pairs of a per-minute series.
func minutePairs(minutes []event.MinutePoint, value func(event.MinutePoint) uint64) pairs {
	data := make(pairs, len(minutes))
	for i, m := range minutes {
		data[i] = [2]int64{m.T, int64(value(m))}
	}
	return data
}

// siteCharts returns the options of every site-wide chart by chart id.
func siteCharts(ov event.Overview) map[string]any {
	return map[string]any{
		chartEventsPerSecond: eventsPerSecondOptions(ov),
		chartEventsPerMinute: eventsPerMinuteOptions(ov),
		chartPresence:        presenceOptions(ov),
		chartDay:             dayOptions(ov),
	}
}

// pageCharts returns, for each page in the overview, the options of its
// heatmaps and scroll-depth chart by chart id.
func pageCharts(ov event.Overview) map[string]map[string]any {
	out := make(map[string]map[string]any, len(ov.Pages))
	for i := range ov.Pages {
		p := &ov.Pages[i]
		out[p.Path] = map[string]any{
			chartClickHeat:    heatmapOptions(chartClickHeat, "Clicks", p.ClickHeat),
			chartMoveHeat:     heatmapOptions(chartMoveHeat, "Mouse moves", p.MoveHeat),
			chartScrollDepth:  scrollDepthOptions(p),
			chartPageActivity: pageActivityOptions(p),
		}
	}
	return out
}

func baseOpts(id string) []charts.GlobalOpts {
	return []charts.GlobalOpts{
		charts.WithInitializationOpts(opts.Initialization{ChartID: id, AssetsHost: "/static/vendor/"}),
		charts.WithAnimation(false),
		charts.WithTooltipOpts(opts.Tooltip{Show: opts.Bool(true), Trigger: "axis"}),
		charts.WithGridOpts(opts.Grid{Left: "56", Right: "24", Top: "56", Bottom: "32"}),
	}
}

// eventsPerSecondOptions: the last minute, one stacked area per kind.
func eventsPerSecondOptions(ov event.Overview) map[string]any {
	return perSecondOptions(chartEventsPerSecond, "eps-", ov.PerSecond, ov.PerSecondByKind)
}

// perSecondOptions draws events per second as one stacked area per kind:
// seconds are the times, byKind one count per second for each kind seen.
// Every kind has a series, zeros included, so merges never leave a stale
// one; series ids are seriesPrefix and the kind.
func perSecondOptions(id, seriesPrefix string, seconds []event.Point, byKind map[string][]uint64) map[string]any {
	line := charts.NewLine()
	line.SetGlobalOptions(append(baseOpts(id),
		charts.WithLegendOpts(opts.Legend{Show: opts.Bool(true), Top: "0"}),
		// A time axis: the browser labels it in the admin's time zone.
		charts.WithXAxisOpts(opts.XAxis{Type: "time", SplitNumber: 4}),
		charts.WithYAxisOpts(opts.YAxis{Type: "value", Name: "events/s", MinInterval: 1}),
	)...)
	for _, k := range event.Kinds() {
		counts := byKind[k.String()]
		data := make(pairs, len(seconds))
		for i, p := range seconds {
			data[i][0] = p.T
			if counts != nil {
				data[i][1] = int64(counts[i])
			}
		}
		line.AddSeries(k.String(), nil,
			charts.WithSeriesId(seriesPrefix+k.String()),
			charts.WithLineChartOpts(opts.LineChart{ShowSymbol: opts.Bool(false), Stack: "events"}),
			charts.WithAreaStyleOpts(opts.AreaStyle{Opacity: opts.Float(0.35)}),
		)
		setData(line.MultiSeries, data)
	}
	line.Validate()
	return line.JSON()
}

// eventsPerMinuteOptions: the last hour, events per minute.
func eventsPerMinuteOptions(ov event.Overview) map[string]any {
	bar := charts.NewBar()
	bar.SetGlobalOptions(append(baseOpts(chartEventsPerMinute),
		charts.WithLegendOpts(opts.Legend{Show: opts.Bool(false)}),
		charts.WithXAxisOpts(opts.XAxis{Type: "time"}),
		charts.WithYAxisOpts(opts.YAxis{Type: "value", Name: "events/min", MinInterval: 1}),
	)...)
	bar.AddSeries("Events", nil, charts.WithSeriesId("epm"))
	setData(bar.MultiSeries, minutePairs(ov.PerMinute, func(m event.MinutePoint) uint64 { return m.Events }))
	bar.Validate()
	return bar.JSON()
}

// presenceOptions: the last hour, arrivals and departures per minute.
func presenceOptions(ov event.Overview) map[string]any {
	bar := charts.NewBar()
	bar.SetGlobalOptions(append(baseOpts(chartPresence),
		charts.WithLegendOpts(opts.Legend{Show: opts.Bool(true), Top: "0"}),
		charts.WithXAxisOpts(opts.XAxis{Type: "time"}),
		charts.WithYAxisOpts(opts.YAxis{Type: "value", Name: "visitors/min", MinInterval: 1}),
	)...)
	bar.AddSeries("Arrivals", nil, charts.WithSeriesId("arrivals"))
	setData(bar.MultiSeries, minutePairs(ov.PerMinute, func(m event.MinutePoint) uint64 { return m.Arrivals }))
	bar.AddSeries("Departures", nil, charts.WithSeriesId("departures"))
	setData(bar.MultiSeries, minutePairs(ov.PerMinute, func(m event.MinutePoint) uint64 { return m.Departures }))
	bar.Validate()
	return bar.JSON()
}

// dayOptions: the last 24 hours in 10-minute points.
func dayOptions(ov event.Overview) map[string]any {
	line := charts.NewLine()
	line.SetGlobalOptions(append(baseOpts(chartDay),
		charts.WithLegendOpts(opts.Legend{Show: opts.Bool(false)}),
		charts.WithXAxisOpts(opts.XAxis{Type: "time"}),
		charts.WithYAxisOpts(opts.YAxis{Type: "value", Name: "events/10 min", MinInterval: 1}),
	)...)
	data := make(pairs, len(ov.Day))
	for i, p := range ov.Day {
		data[i] = [2]int64{p.T, int64(p.N)}
	}
	line.AddSeries("Events", nil,
		charts.WithSeriesId("day"),
		charts.WithLineChartOpts(opts.LineChart{ShowSymbol: opts.Bool(false)}),
		charts.WithAreaStyleOpts(opts.AreaStyle{Opacity: opts.Float(0.25)}),
	)
	setData(line.MultiSeries, data)
	line.Validate()
	return line.JSON()
}

// minHeatRows is the least depth a heatmap shows, so a page with activity
// only at its top still looks like a page.
const minHeatRows = 24

// heatmapOptions draws a page's heatmap: columns across the viewport's
// width, rows down the page in the same unit, row 0 at the top.
func heatmapOptions(id, name string, cells []event.HeatCell) map[string]any {
	rows, hottest := minHeatRows, uint64(1)
	data := make([][3]int64, len(cells))
	for i, c := range cells {
		rows = max(rows, c.Row+1)
		hottest = max(hottest, c.N)
		data[i] = [3]int64{int64(c.Col), int64(c.Row), int64(c.N)}
	}
	hm := charts.NewHeatMap()
	hm.SetGlobalOptions(
		charts.WithInitializationOpts(opts.Initialization{ChartID: id, AssetsHost: "/static/vendor/"}),
		charts.WithAnimation(false),
		charts.WithTooltipOpts(opts.Tooltip{Show: opts.Bool(true)}),
		charts.WithLegendOpts(opts.Legend{Show: opts.Bool(false)}),
		charts.WithGridOpts(opts.Grid{Left: "8", Right: "8", Top: "8", Bottom: "48"}),
		charts.WithXAxisOpts(opts.XAxis{Type: "category", Data: axis(event.HeatCols), AxisLabel: &opts.AxisLabel{Show: opts.Bool(false)}}),
		charts.WithYAxisOpts(opts.YAxis{Type: "category", Data: axis(rows), Inverse: opts.Bool(true), AxisLabel: &opts.AxisLabel{Show: opts.Bool(false)}}),
		charts.WithVisualMapOpts(opts.VisualMap{
			Calculable: opts.Bool(true), Min: 0, Max: float32(hottest), Orient: "horizontal", Left: "center", Bottom: "0",
			InRange: &opts.VisualMapInRange{Color: []string{"#e8f0fe", "#fbbf24", "#ef4444"}},
		}),
	)
	hm.AddSeries(name, nil, charts.WithSeriesId(id))
	setData(hm.MultiSeries, data)
	hm.Validate()
	return hm.JSON()
}

func axis(n int) []string {
	a := make([]string, n)
	for i := range a {
		a[i] = strconv.Itoa(i)
	}
	return a
}

// scrollDepthOptions: the share of a page's views that reached each tenth.
func scrollDepthOptions(p *event.PageStats) map[string]any {
	bar := charts.NewBar()
	bar.SetGlobalOptions(append(baseOpts(chartScrollDepth),
		charts.WithLegendOpts(opts.Legend{Show: opts.Bool(false)}),
		charts.WithYAxisOpts(opts.YAxis{Type: "value", Name: "% of page views", Min: 0, Max: 100}),
	)...)
	labels := make([]string, len(p.ScrollReached))
	data := make([]opts.BarData, len(p.ScrollReached))
	for i, n := range p.ScrollReached {
		labels[i] = strconv.Itoa((i+1)*10) + "%"
		pct := 0.0
		if p.PageViews > 0 {
			pct = float64(n) * 100 / float64(p.PageViews)
		}
		data[i] = opts.BarData{Value: int(pct + 0.5)}
	}
	bar.SetXAxis(labels)
	bar.AddSeries("Reached", data, charts.WithSeriesId("scroll"))
	bar.Validate()
	return bar.JSON()
}

// pageActivityOptions: a page's last hour, events per minute stacked by
// kind, with page views arriving and leaving.
func pageActivityOptions(p *event.PageStats) map[string]any {
	bar := charts.NewBar()
	bar.SetGlobalOptions(append(baseOpts(chartPageActivity),
		charts.WithLegendOpts(opts.Legend{Show: opts.Bool(true), Top: "0"}),
		charts.WithXAxisOpts(opts.XAxis{Type: "time", SplitNumber: 6}),
		charts.WithYAxisOpts(opts.YAxis{Type: "value", Name: "per minute", MinInterval: 1}),
	)...)
	for _, k := range event.Kinds() {
		bar.AddSeries(k.String(), nil, charts.WithSeriesId("page-"+k.String()), charts.WithBarChartOpts(opts.BarChart{Stack: "events"}))
		setData(bar.MultiSeries, minutePairs(p.PerMinute, func(m event.MinutePoint) uint64 { return m.ByKind[k.String()] }))
	}
	for _, sr := range []struct {
		id, name string
		get      func(event.MinutePoint) uint64
	}{
		{"page-arrivals", "page views started", func(m event.MinutePoint) uint64 { return m.Arrivals }},
		{"page-departures", "page views ended", func(m event.MinutePoint) uint64 { return m.Departures }},
	} {
		bar.AddSeries(sr.name, nil, charts.WithSeriesId(sr.id))
		setData(bar.MultiSeries, minutePairs(p.PerMinute, sr.get))
	}
	bar.Validate()
	return bar.JSON()
}
