package dashboard

import (
	"github.com/go-echarts/go-echarts/v2/charts"
	"github.com/go-echarts/go-echarts/v2/opts"

	"github.com/pulse-analytics/pulse/event"
)

// Chart and series ids are fixed so that the browser's setOption merges an
// update into the chart in place instead of adding a new one.
const (
	chartEventsPerSecond  = "events-per-second"
	seriesEventsPerSecond = "eps"
)

// eventsPerSecondOptions is the echarts option object of the events-per-
// second chart. The page renders it whole on first load and SSE sends it
// again on every update; echarts merges by series id.
func eventsPerSecondOptions(ov event.Overview) map[string]any {
	line := charts.NewLine()
	line.SetGlobalOptions(
		charts.WithInitializationOpts(opts.Initialization{ChartID: chartEventsPerSecond, AssetsHost: "/static/vendor/"}),
		charts.WithAnimation(false),
		charts.WithTooltipOpts(opts.Tooltip{Show: opts.Bool(true), Trigger: "axis"}),
		charts.WithLegendOpts(opts.Legend{Show: opts.Bool(false)}),
		charts.WithGridOpts(opts.Grid{Left: "48", Right: "16", Top: "32", Bottom: "32"}),
		// A time axis: the browser labels it in the admin's time zone.
		charts.WithXAxisOpts(opts.XAxis{Type: "time"}),
		charts.WithYAxisOpts(opts.YAxis{Type: "value", Name: "events/s", MinInterval: 1}),
	)
	data := make([]opts.LineData, len(ov.PerSecond))
	for i, p := range ov.PerSecond {
		data[i] = opts.LineData{Value: []any{p.T, p.N}}
	}
	line.AddSeries("Events per second", data,
		charts.WithSeriesId(seriesEventsPerSecond),
		charts.WithLineChartOpts(opts.LineChart{ShowSymbol: opts.Bool(false)}),
		charts.WithAreaStyleOpts(opts.AreaStyle{Opacity: opts.Float(0.25)}),
	)
	line.Validate()
	return line.JSON()
}
