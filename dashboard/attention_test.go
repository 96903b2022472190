package dashboard

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/pulse-analytics/pulse/event"
)

func TestPriceMoves(t *testing.T) {
	c := func(t int64, close float64) event.Candle { return event.Candle{T: t, Close: close} }
	tests := []struct {
		name    string
		candles []event.Candle
		want    []priceMove
	}{
		{"none", nil, nil},
		{"one minute", []event.Candle{c(0, 100)}, nil},
		{"below the threshold", []event.Candle{c(0, 100), c(60, 100.49)}, nil},
		{"up at the threshold", []event.Candle{c(0, 100), c(60, 100.5)}, []priceMove{{60, 0.5}}},
		{"down, then back", []event.Candle{c(0, 100), c(60, 99), c(120, 99.2), c(180, 100)}, []priceMove{{60, -1}, {180, 100.0/99.2*100 - 100}}},
		{"no price before", []event.Candle{c(0, 0), c(60, 5)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := priceMoves(tt.candles)
			if len(got) != len(tt.want) {
				t.Fatalf("moves %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i].T != tt.want[i].T || got[i].Percent-tt.want[i].Percent > 1e-9 || tt.want[i].Percent-got[i].Percent > 1e-9 {
					t.Errorf("move %d: %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

// TestAttentionCharts: one chart per symbol, with the site's activity on
// the left axis, the symbol's price on the right, and the price's move
// marked on the moves.
func TestAttentionCharts(t *testing.T) {
	if attentionCharts(event.Overview{}, nil) != nil || attentionCharts(event.Overview{}, &event.QuotesPanel{}) != nil {
		t.Error("charts without quotes")
	}
	ov := event.Overview{PerMinute: []event.MinutePoint{{T: 0, ByKind: map[string]uint64{"move": 7, "click": 2}, Arrivals: 1}, {T: 60_000}}}
	quotes := &event.QuotesPanel{Symbols: []event.SymbolPanel{
		{Last: event.Quote{Symbol: "IBM"}, Candles: []event.Candle{{T: 0, Close: 100}, {T: 60_000, Close: 98}}},
		{Last: event.Quote{Symbol: "AAPL"}},
	}}
	got := attentionCharts(ov, quotes)
	if len(got) != 2 || got["IBM"][chartAttention] == nil || got["AAPL"][chartAttention] == nil {
		t.Fatalf("charts by symbol: %v", got)
	}
	data, _ := json.Marshal(got["IBM"][chartAttention])
	var opt struct {
		Series []struct {
			ID         string
			YAxisIndex int
			Data       [][2]float64
			MarkLine   *struct{ Data []struct{ Name string } }
		}
		YAxis []struct{ Name string }
	}
	if err := json.Unmarshal(data, &opt); err != nil {
		t.Fatal(err)
	}
	if len(opt.YAxis) != 2 || opt.YAxis[1].Name != "IBM" {
		t.Errorf("axes %+v", opt.YAxis)
	}
	byID := map[string]int{}
	for i, s := range opt.Series {
		byID[s.ID] = i
	}
	moves, price := opt.Series[byID["att-moves"]], opt.Series[byID["att-price"]]
	if moves.Data[0][1] != 7 || opt.Series[byID["att-clicks"]].Data[0][1] != 2 || opt.Series[byID["att-arrivals"]].Data[0][1] != 1 {
		t.Errorf("activity series %+v", opt.Series)
	}
	if price.YAxisIndex != 1 || len(price.Data) != 2 || price.Data[1][1] != 98 {
		t.Errorf("price series %+v", price)
	}
	if moves.MarkLine == nil || len(moves.MarkLine.Data) != 1 || !strings.HasPrefix(moves.MarkLine.Data[0].Name, "-2.00%") {
		t.Errorf("marks on the moves: %+v", moves.MarkLine)
	}
}
