package aggregator

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pulse-analytics/pulse/event"
	"github.com/pulse-analytics/pulse/natsutil/natstest"
)

func TestCandlesAndPollSummary(t *testing.T) {
	q := newQuoteState()
	m0 := int64(1_700_000_040_000) // a minute boundary
	for i, p := range []float64{10, 12, 9, 11, 11.5} {
		q.applyQuote(&event.Quote{Symbol: "IBM", Price: p, Volume: int64(1000 + i*100), Time: m0 + int64(i)*10_000})
	}
	q.applyQuote(&event.Quote{Symbol: "IBM", Price: 13, Volume: 1700, Time: m0 + 60_000})
	q.applyQuote(&event.Quote{Symbol: "IBM", Price: 99, Time: m0}) // late and old: ignored
	for _, st := range []event.PollStats{
		{Node: "a", End: m0 + 5_000, Polls: 100, Futile: 3, Fetches: 12, StalenessMs: 50_000, CallIn: []uint64{90, 10, 0, 0, 0, 0, 0, 0}},
		{Node: "b", End: m0 + 50_000, Polls: 20, Futile: 1, Fetches: 0, StalenessMs: 10_000, CallIn: []uint64{20, 0, 0, 0, 0, 0, 0, 0}},
	} {
		q.applyStats(&st)
	}
	now := time.UnixMilli(m0 + 90_000)
	q.prune(now)
	p := q.panel(now)
	if len(p.Symbols) != 1 {
		t.Fatalf("symbols %+v", p.Symbols)
	}
	s := p.Symbols[0]
	want := []event.Candle{{T: m0, Open: 10, Close: 11.5, Low: 9, High: 12, Volume: 400}, {T: m0 + 60_000, Open: 13, Close: 13, Low: 13, High: 13, Volume: 0}}
	if fmt.Sprint(s.Candles) != fmt.Sprint(want) || s.Last.Price != 13 || len(s.Points) != 6 {
		t.Errorf("candles %+v, last %+v, %d points", s.Candles, s.Last, len(s.Points))
	}
	if p.Nodes != 2 || p.CallIn[0] != 110 || p.CallIn[1] != 10 {
		t.Errorf("nodes %d, callIn %v", p.Nodes, p.CallIn)
	}
	if p.PollsPerSecond != 2 || p.FutileShare != 4.0/120 || p.FetchesPerMinute != 12 || p.MeanStalenessMs != 500 {
		t.Errorf("summary: %.3f polls/s, futile %.3f, %.1f fetches/min, staleness %.0f ms", p.PollsPerSecond, p.FutileShare, p.FetchesPerMinute, p.MeanStalenessMs)
	}
	later := time.UnixMilli(m0 + 3*3600_000)
	q.prune(later)
	if p := q.panel(later); len(p.Symbols[0].Candles) != 0 || len(p.Symbols[0].Points) != 0 || p.Nodes != 0 {
		t.Errorf("after hours: %+v", p)
	}
}

func TestQuotesPanelThroughRestart(t *testing.T) {
	ns := natstest.Run(t)
	publish := func(sym string, i int) {
		data, _ := json.Marshal(event.Quote{Symbol: sym, Price: float64(100 + i), Time: time.Now().UnixMilli() + int64(i)})
		msg := &nats.Msg{Subject: event.QuoteSubject(sym), Data: data, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%s:%d", sym, i))
		if _, err := ns.JS.PublishMsg(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
	}
	panel := func(want int) event.QuotesPanel {
		var p event.QuotesPanel
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if data, err := ns.Stores.Views.Quotes(context.Background()); err == nil {
				_ = json.Unmarshal(data, &p)
				if len(p.Symbols) > 0 && len(p.Symbols[0].Points) == want {
					return p
				}
			}
		}
		t.Fatalf("quotes panel never had %d points: %+v", want, p)
		return p
	}
	stop := runAggregator(t, ns)
	for i := range 3 {
		publish("BRK.B", i)
	}
	panel(3)
	stop()
	publish("BRK.B", 3)
	runAggregator(t, ns)
	p := panel(4)
	if p.Symbols[0].Last.Symbol != "BRK.B" || p.Symbols[0].Last.Price != 103 {
		t.Errorf("last %+v", p.Symbols[0].Last)
	}
}

// TestQuoteTurnsStaleWithNothingArriving: a quote past its StaleAt is
// shown stale, and the panel says so on its own, with no quote or poll
// statistics arriving (the node that fetched it died, the market closed).
func TestQuoteTurnsStaleWithNothingArriving(t *testing.T) {
	ns := natstest.Run(t)
	now := time.Now().UnixMilli()
	data, _ := json.Marshal(event.Quote{Symbol: "IBM", Price: 100, Time: now, StaleAt: now + 1500})
	if _, err := ns.JS.Publish(context.Background(), event.QuoteSubject("IBM"), data); err != nil {
		t.Fatal(err)
	}
	runAggregator(t, ns)
	var seen []bool
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		data, err := ns.Stores.Views.Quotes(context.Background())
		if err != nil {
			continue
		}
		var p event.QuotesPanel
		if err := json.Unmarshal(data, &p); err != nil || len(p.Symbols) != 1 {
			continue
		}
		if stale := p.Symbols[0].Last.Stale; len(seen) == 0 || seen[len(seen)-1] != stale {
			seen = append(seen, stale)
		}
		if p.Symbols[0].Last.Stale {
			break
		}
	}
	if fmt.Sprint(seen) != "[false true]" {
		t.Errorf("stale marks of the panels: %v, want fresh then stale", seen)
	}
}
