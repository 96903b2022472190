package dashboard

import (
	"fmt"
	"math"

	"github.com/go-echarts/go-echarts/v2/charts"
	"github.com/go-echarts/go-echarts/v2/opts"

	"github.com/pulse-analytics/pulse/event"
)

// The attention chart puts a site's activity and a symbol's price on one
// time axis over the last hour, minute by minute, and marks on the
// activity the minutes in which the price moved by attentionMove or more:
// whether visitors react to the market shows as activity that changes at
// the marks.
const (
	chartAttention = "price-attention"
	// attentionMove is the move of a minute's closing price from the
	// minute before, in percent, that the chart marks.
	attentionMove = 0.5
)

// priceMove is a minute in which the price moved by attentionMove or more.
type priceMove struct {
	T       int64   // start of the minute, Unix ms
	Percent float64 // from the minute before's close
}

// priceMoves returns the minutes of candles whose close moved by
// attentionMove percent or more from the minute before's.
func priceMoves(candles []event.Candle) []priceMove {
	var out []priceMove
	for i := 1; i < len(candles); i++ {
		prev := candles[i-1].Close
		if prev == 0 {
			continue
		}
		pct := (candles[i].Close - prev) / prev * 100
		if math.Abs(pct) >= attentionMove {
			out = append(out, priceMove{candles[i].T, pct})
		}
	}
	return out
}

// attentionCharts returns, for each symbol of the quotes panel, the
// options of the site's attention chart beside that symbol, by symbol and
// chart id; nil without quotes.
func attentionCharts(ov event.Overview, quotes *event.QuotesPanel) map[string]map[string]any {
	if quotes == nil || len(quotes.Symbols) == 0 {
		return nil
	}
	out := make(map[string]map[string]any, len(quotes.Symbols))
	for i := range quotes.Symbols {
		sp := &quotes.Symbols[i]
		out[sp.Last.Symbol] = map[string]any{chartAttention: attentionOptions(ov, sp)}
	}
	return out
}

// attentionOptions draws moves, clicks and arrivals per minute on the left
// axis and the symbol's closing price per minute on the right, with the
// price moves marked on the moves.
func attentionOptions(ov event.Overview, sp *event.SymbolPanel) map[string]any {
	line := charts.NewLine()
	line.SetGlobalOptions(
		charts.WithInitializationOpts(opts.Initialization{ChartID: chartAttention, AssetsHost: "/static/vendor/"}),
		charts.WithAnimation(false),
		charts.WithTooltipOpts(opts.Tooltip{Show: opts.Bool(true), Trigger: "axis"}),
		// Room on the right for the price axis.
		charts.WithGridOpts(opts.Grid{Left: "56", Right: "64", Top: "56", Bottom: "32"}),
		charts.WithLegendOpts(opts.Legend{Show: opts.Bool(true), Top: "0"}),
		charts.WithXAxisOpts(opts.XAxis{Type: "time", SplitNumber: 6}),
		charts.WithYAxisOpts(opts.YAxis{Type: "value", Name: "per minute", MinInterval: 1}),
	)
	line.ExtendYAxis(opts.YAxis{Type: "value", Name: sp.Last.Symbol, Scale: opts.Bool(true), Position: "right", SplitLine: &opts.SplitLine{Show: opts.Bool(false)}})

	var marks []opts.MarkLineNameXAxisItem
	for _, m := range priceMoves(sp.Candles) {
		marks = append(marks, opts.MarkLineNameXAxisItem{Name: fmt.Sprintf("%+.2f%%", m.Percent), XAxis: m.T})
	}
	var moveMarks []charts.SeriesOpts
	if len(marks) > 0 {
		moveMarks = []charts.SeriesOpts{
			charts.WithMarkLineNameXAxisItemOpts(marks...),
			charts.WithMarkLineStyleOpts(opts.MarkLineStyle{
				Symbol: []string{"none", "none"},
				Label:  &opts.Label{Show: opts.Bool(true), Formatter: "{b}"},
			}),
		}
	}
	activity := []struct {
		id, name string
		get      func(event.MinutePoint) uint64
		extra    []charts.SeriesOpts
	}{
		{"att-moves", "moves", func(m event.MinutePoint) uint64 { return m.ByKind[event.KindMove.String()] }, moveMarks},
		{"att-clicks", "clicks", func(m event.MinutePoint) uint64 { return m.ByKind[event.KindClick.String()] }, nil},
		{"att-arrivals", "arrivals", func(m event.MinutePoint) uint64 { return m.Arrivals }, nil},
	}
	for _, a := range activity {
		line.AddSeries(a.name, nil, append([]charts.SeriesOpts{
			charts.WithSeriesId(a.id),
			charts.WithLineChartOpts(opts.LineChart{ShowSymbol: opts.Bool(false)}),
		}, a.extra...)...)
		setData(line.MultiSeries, minutePairs(ov.PerMinute, a.get))
	}
	price := make([][2]float64, len(sp.Candles))
	for i, c := range sp.Candles {
		price[i] = [2]float64{float64(c.T), c.Close}
	}
	line.AddSeries(sp.Last.Symbol+" price", nil,
		charts.WithSeriesId("att-price"),
		// Points shown: a price of one minute, just after a start, is a dot.
		charts.WithLineChartOpts(opts.LineChart{YAxisIndex: 1, ShowSymbol: opts.Bool(true), SymbolSize: 4, Step: "end"}),
		charts.WithLineStyleOpts(opts.LineStyle{Width: 2, Type: "dashed"}),
	)
	setData(line.MultiSeries, price)
	line.Validate()
	return line.JSON()
}
