package aggregator

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pulse-analytics/pulse/event"
	"github.com/pulse-analytics/pulse/store"
)

// Bounds of the quotes panel.
const (
	// quoteWindow is the span of prices, candles and poll statistics, in
	// minutes.
	quoteWindow = 60
	// maxPoints bounds a symbol's price points: an hour of 5 s quotes.
	maxPoints = 720
	// maxSymbols bounds the symbols followed; quotes of further symbols
	// are not charted.
	maxSymbols = 200
	// summaryMinutes is how many complete minutes the summary figures
	// cover.
	summaryMinutes = 5
)

// SymbolState is what the aggregator keeps of one symbol.
type SymbolState struct {
	Last    event.Quote             `json:"last"`
	Points  []event.PricePoint      `json:"points"`
	Candles map[int64]*event.Candle `json:"candles"` // by Unix minute
	// StartVolume is the day's volume at each candle's first quote, so a
	// candle's volume is the difference.
	StartVolume map[int64]int64 `json:"startVolume"`

	// staleShown is whether the last panel showed Last as stale.
	staleShown bool
}

// PollMinute sums the poll statistics of one minute.
type PollMinute struct {
	event.PollPoint
	CallIn      []uint64        `json:"callIn"`
	StalenessMs uint64          `json:"stalenessMs"`
	Nodes       map[string]bool `json:"nodes"`
}

// quoteState is the aggregated state of the QUOTES stream; it is what the
// quotes snapshot stores.
type quoteState struct {
	// Seq is the last QUOTES sequence applied.
	Seq     uint64                  `json:"seq"`
	Symbols map[string]*SymbolState `json:"symbols"`
	Minutes map[int64]*PollMinute   `json:"minutes"`
	Version uint64                  `json:"version"`

	dirty bool
}

func newQuoteState() *quoteState {
	return &quoteState{Symbols: make(map[string]*SymbolState), Minutes: make(map[int64]*PollMinute)}
}

// applyQuote adds a fetched quote.
func (q *quoteState) applyQuote(qt *event.Quote) {
	s := q.Symbols[qt.Symbol]
	if s == nil {
		if len(q.Symbols) >= maxSymbols {
			return
		}
		s = &SymbolState{Candles: make(map[int64]*event.Candle), StartVolume: make(map[int64]int64)}
		q.Symbols[qt.Symbol] = s
	}
	if qt.Time < s.Last.Time {
		return // an old quote replayed out of order adds nothing
	}
	s.Last = *qt
	if n := len(s.Points); n == 0 || s.Points[n-1].T != qt.Time {
		s.Points = append(s.Points, event.PricePoint{T: qt.Time, P: qt.Price})
		if len(s.Points) > maxPoints {
			s.Points = s.Points[len(s.Points)-maxPoints:]
		}
	}
	m := qt.Time / 60_000
	c := s.Candles[m]
	if c == nil {
		c = &event.Candle{T: m * 60_000, Open: qt.Price, Close: qt.Price, Low: qt.Price, High: qt.Price}
		s.Candles[m] = c
		s.StartVolume[m] = qt.Volume
	}
	c.Close = qt.Price
	c.Low = min(c.Low, qt.Price)
	c.High = max(c.High, qt.Price)
	// Volume is the day's running total; a new day restarts it.
	c.Volume = max(qt.Volume-s.StartVolume[m], 0)
	q.dirty = true
}

// applyStats adds a node's poll statistics to the minute they end in.
func (q *quoteState) applyStats(st *event.PollStats) {
	m := st.End / 60_000
	pm := q.Minutes[m]
	if pm == nil {
		pm = &PollMinute{PollPoint: event.PollPoint{T: m * 60_000}, CallIn: make([]uint64, len(event.CallInBuckets)+1), Nodes: map[string]bool{}}
		q.Minutes[m] = pm
	}
	pm.Polls += st.Polls
	pm.Futile += st.Futile
	pm.Fetches += st.Fetches
	pm.FetchErrors += st.FetchErrors
	pm.StalenessMs += st.StalenessMs
	pm.Nodes[st.Node] = true
	for i, n := range st.CallIn {
		if i < len(pm.CallIn) {
			pm.CallIn[i] += n
		}
	}
	q.dirty = true
}

// prune drops what is older than the window.
func (q *quoteState) prune(now time.Time) {
	oldest := now.Unix()/60 - quoteWindow
	for m := range q.Minutes {
		if m < oldest {
			delete(q.Minutes, m)
		}
	}
	for _, s := range q.Symbols {
		for m := range s.Candles {
			if m < oldest {
				delete(s.Candles, m)
				delete(s.StartVolume, m)
			}
		}
		i := 0
		for i < len(s.Points) && s.Points[i].T < oldest*60_000 {
			i++
		}
		s.Points = s.Points[i:]
	}
}

// panel builds the quotes panel as of now.
func (q *quoteState) panel(now time.Time) event.QuotesPanel {
	p := event.QuotesPanel{Version: q.Version, Updated: now.UnixMilli(), CallIn: make([]uint64, len(event.CallInBuckets)+1)}
	names := make([]string, 0, len(q.Symbols))
	for sym := range q.Symbols {
		names = append(names, sym)
	}
	slices.Sort(names)
	for _, sym := range names {
		s := q.Symbols[sym]
		sp := event.SymbolPanel{Last: s.Last, Points: slices.Clone(s.Points)}
		sp.Last.Stale = sp.Last.StaleAtTime(now.UnixMilli())
		for _, c := range s.Candles {
			sp.Candles = append(sp.Candles, *c)
		}
		slices.SortFunc(sp.Candles, func(a, b event.Candle) int { return cmp.Compare(a.T, b.T) })
		p.Symbols = append(p.Symbols, sp)
	}
	thisMinute := now.Unix() / 60
	nodes := map[string]bool{}
	var sum PollMinute
	// Summaries cover complete minutes only, from the first one with
	// statistics (a new cluster has fewer than summaryMinutes).
	first := int64(0)
	for i := range quoteWindow {
		m := thisMinute - quoteWindow + 1 + int64(i)
		pp := event.PollPoint{T: m * 60_000}
		if pm := q.Minutes[m]; pm != nil {
			pp = pm.PollPoint
			for j, n := range pm.CallIn {
				p.CallIn[j] += n
			}
			for n := range pm.Nodes {
				nodes[n] = true
			}
			if m < thisMinute && m >= thisMinute-summaryMinutes {
				if first == 0 {
					first = m
				}
				sum.Polls += pm.Polls
				sum.Futile += pm.Futile
				sum.Fetches += pm.Fetches
				sum.StalenessMs += pm.StalenessMs
			}
		}
		p.PerMinute = append(p.PerMinute, pp)
	}
	p.Nodes = len(nodes)
	if minutes := thisMinute - first; first > 0 && minutes > 0 {
		p.PollsPerSecond = float64(sum.Polls) / float64(minutes*60)
		p.FetchesPerMinute = float64(sum.Fetches) / float64(minutes)
	}
	if sum.Polls > 0 {
		p.FutileShare = float64(sum.Futile) / float64(sum.Polls)
		p.MeanStalenessMs = float64(sum.StalenessMs) / float64(sum.Polls)
	}
	return p
}

// handleQuote applies one QUOTES message, skipping what the state has.
func (a *Aggregator) handleQuote(msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		return
	}
	seq := meta.Sequence.Stream
	a.mu.Lock()
	defer a.mu.Unlock()
	q := a.quotes
	if seq <= q.Seq {
		return
	}
	q.Seq = seq
	q.dirty = true
	switch {
	case strings.HasPrefix(msg.Subject(), "quotes."):
		var qt event.Quote
		if err := event.Decode("quote", msg.Data(), &qt); err != nil || qt.Symbol == "" {
			a.metrics.invalid.Inc()
			return
		}
		q.applyQuote(&qt)
	case strings.HasPrefix(msg.Subject(), "quotestats."):
		var st event.PollStats
		if err := event.Decode("poll stats", msg.Data(), &st); err != nil {
			a.metrics.invalid.Inc()
			return
		}
		q.applyStats(&st)
	default:
		a.metrics.invalid.Inc()
	}
}

// tickQuotes writes the quotes snapshot (one object, holding the sequence
// it covers) and publishes the panel.
func (a *Aggregator) tickQuotes(ctx context.Context, now time.Time) {
	a.mu.Lock()
	q := a.quotes
	// A quote turning stale changes the panel though nothing arrived: an
	// owner of its fetches lost, the market closed.
	for _, sym := range q.Symbols {
		if stale := sym.Last.StaleAtTime(now.UnixMilli()); stale != sym.staleShown {
			sym.staleShown = stale
			q.dirty = true
		}
	}
	if !q.dirty {
		a.mu.Unlock()
		return
	}
	q.prune(now)
	q.Version = nextVersion(q.Version, now)
	q.dirty = false
	snapshot, _ := json.Marshal(q)
	panel, _ := json.Marshal(q.panel(now))
	a.mu.Unlock()

	if err := a.cfg.Snapshots.PutQuotes(ctx, snapshot); err != nil {
		a.metrics.snapshotErrors.Inc()
		a.log.Error("quotes snapshot not written", "err", err)
		a.mu.Lock()
		a.quotes.dirty = true
		a.mu.Unlock()
		return
	}
	if err := a.cfg.Views.PutQuotes(ctx, panel); err != nil {
		a.log.Warn("quotes view not stored", "err", err)
	}
	if err := a.cfg.Notifier.Publish(event.SubjectQuotesPanel, panel); err != nil {
		a.log.Warn("quotes panel not published", "err", err)
	}
}

// loadQuotes reads the quotes snapshot, if there is one; its Seq tells
// what it covers.
func (a *Aggregator) loadQuotes(ctx context.Context) error {
	data, err := a.cfg.Snapshots.Quotes(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	q := newQuoteState()
	if err := json.Unmarshal(data, q); err != nil {
		return err
	}
	for _, s := range q.Symbols {
		if s.Candles == nil {
			s.Candles = make(map[int64]*event.Candle)
		}
		if s.StartVolume == nil {
			s.StartVolume = make(map[int64]int64)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.quotes = q
	return nil
}
