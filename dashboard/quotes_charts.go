package dashboard

import (
	"fmt"
	"strconv"

	"github.com/go-echarts/go-echarts/v2/charts"
	"github.com/go-echarts/go-echarts/v2/opts"

	"github.com/pulse-analytics/pulse/event"
)

// Chart ids of the quotes page.
const (
	chartPrice   = "price"
	chartCandles = "candles"
	chartPolls   = "polls"
	chartCallIn  = "callin"
)

// quoteCharts returns the quotes page's charts by id, for one symbol.
func quoteCharts(p event.QuotesPanel, sym *event.SymbolPanel) map[string]any {
	out := map[string]any{chartPolls: pollsOptions(p), chartCallIn: callInOptions(p)}
	if sym != nil {
		out[chartPrice] = priceOptions(sym)
		out[chartCandles] = candleOptions(sym)
	}
	return out
}

func priceOptions(s *event.SymbolPanel) map[string]any {
	line := charts.NewLine()
	line.SetGlobalOptions(append(baseOpts(chartPrice),
		charts.WithLegendOpts(opts.Legend{Show: opts.Bool(false)}),
		charts.WithXAxisOpts(opts.XAxis{Type: "time", SplitNumber: 4}),
		charts.WithYAxisOpts(opts.YAxis{Type: "value", Name: "price", Scale: opts.Bool(true)}),
	)...)
	data := make([]opts.LineData, len(s.Points))
	for i, p := range s.Points {
		data[i] = opts.LineData{Value: []any{p.T, p.P}}
	}
	line.AddSeries(s.Last.Symbol, data,
		charts.WithSeriesId("price"),
		charts.WithLineChartOpts(opts.LineChart{ShowSymbol: opts.Bool(false)}),
	)
	line.Validate()
	return line.JSON()
}

// candleOptions draws 1-minute candles; go-echarts orders a candle's values
// [open, close, low, high].
func candleOptions(s *event.SymbolPanel) map[string]any {
	k := charts.NewKLine()
	k.SetGlobalOptions(append(baseOpts(chartCandles),
		charts.WithLegendOpts(opts.Legend{Show: opts.Bool(false)}),
		charts.WithYAxisOpts(opts.YAxis{Type: "value", Name: "price", Scale: opts.Bool(true)}),
	)...)
	labels := make([]string, len(s.Candles))
	data := make([]opts.KlineData, len(s.Candles))
	for i, c := range s.Candles {
		labels[i] = strconv.FormatInt(c.T, 10)
		data[i] = opts.KlineData{Value: [4]float64{c.Open, c.Close, c.Low, c.High}}
	}
	// Labels are Unix ms; dashboard.js shows them as local times.
	k.SetXAxis(labels)
	k.AddSeries(s.Last.Symbol, data, charts.WithSeriesId("candles"))
	k.Validate()
	return k.JSON()
}

func pollsOptions(p event.QuotesPanel) map[string]any {
	line := charts.NewLine()
	line.SetGlobalOptions(append(baseOpts(chartPolls),
		charts.WithLegendOpts(opts.Legend{Show: opts.Bool(true), Top: "0"}),
		charts.WithXAxisOpts(opts.XAxis{Type: "time", SplitNumber: 4}),
		charts.WithYAxisOpts(opts.YAxis{Type: "value", Name: "per minute", MinInterval: 1}),
	)...)
	series := []struct {
		id, name string
		get      func(event.PollPoint) uint64
	}{
		{"polls", "Polls", func(pp event.PollPoint) uint64 { return pp.Polls }},
		{"futile", "Futile polls", func(pp event.PollPoint) uint64 { return pp.Futile }},
		{"fetches", "Upstream calls", func(pp event.PollPoint) uint64 { return pp.Fetches }},
	}
	for _, sr := range series {
		data := make([]opts.LineData, len(p.PerMinute))
		for i, pp := range p.PerMinute {
			data[i] = opts.LineData{Value: []any{pp.T, sr.get(pp)}}
		}
		line.AddSeries(sr.name, data, charts.WithSeriesId(sr.id), charts.WithLineChartOpts(opts.LineChart{ShowSymbol: opts.Bool(false)}))
	}
	line.Validate()
	return line.JSON()
}

func callInOptions(p event.QuotesPanel) map[string]any {
	bar := charts.NewBar()
	bar.SetGlobalOptions(append(baseOpts(chartCallIn),
		charts.WithLegendOpts(opts.Legend{Show: opts.Bool(false)}),
		charts.WithYAxisOpts(opts.YAxis{Type: "value", Name: "answers, last hour", MinInterval: 1}),
	)...)
	labels := make([]string, len(p.CallIn))
	data := make([]opts.BarData, len(p.CallIn))
	prev := 0.0
	for i, n := range p.CallIn {
		if i < len(event.CallInBuckets) {
			labels[i] = fmt.Sprintf("%s–%s s", strconv.FormatFloat(prev, 'f', -1, 64), strconv.FormatFloat(event.CallInBuckets[i], 'f', -1, 64))
			prev = event.CallInBuckets[i]
		} else {
			labels[i] = fmt.Sprintf("> %s s", strconv.FormatFloat(prev, 'f', -1, 64))
		}
		data[i] = opts.BarData{Value: n}
	}
	bar.SetXAxis(labels)
	bar.AddSeries("callIn", data, charts.WithSeriesId("callin"))
	bar.Validate()
	return bar.JSON()
}
