package quotes_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulse-analytics/pulse/natsutil/natstest"
	"github.com/pulse-analytics/pulse/quotes"
)

// countingSource counts upstream fetches per symbol and interval slot, and
// can be made to fail.
type countingSource struct {
	quotes.Source
	mu      sync.Mutex
	fetches map[string]map[int64]int
	fail    error
}

func (c *countingSource) Fetch(ctx context.Context, sym string) (quotes.Quote, error) {
	c.mu.Lock()
	slot := time.Now().UnixNano() / int64(c.Interval())
	if c.fetches[sym] == nil {
		c.fetches[sym] = make(map[int64]int)
	}
	c.fetches[sym][slot]++
	fail := c.fail
	c.mu.Unlock()
	if fail != nil {
		return quotes.Quote{}, fail
	}
	return c.Source.Fetch(ctx, sym)
}

func (c *countingSource) counts(sym string) (total int, maxPerSlot int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.fetches[sym] {
		total += n
		maxPerSlot = max(maxPerSlot, n)
	}
	return total, maxPerSlot
}

func newCounting(interval time.Duration) *countingSource {
	return &countingSource{Source: quotes.NewSimulated(quotes.SimulatedConfig{Seed: 3, Interval: interval}), fetches: map[string]map[int64]int{}}
}

type node struct {
	p    *quotes.Poller
	stop func()
}

func startPoller(t *testing.T, ns *natstest.Server, src quotes.Source, id string, edit func(*quotes.PollerConfig)) *node {
	t.Helper()
	cfg := quotes.PollerConfig{Source: src, KV: ns.Stores.Quotes, Publisher: ns.JS, NodeID: id, Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelError}))}
	if edit != nil {
		edit(&cfg)
	}
	p, err := quotes.NewPoller(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := p.Run(ctx); err != nil {
			t.Error(err)
		}
	}()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return &node{p: p, stop: stop}
}

// poll polls sym on nodes round-robin, like widgets spread over a cluster,
// for d.
func poll(nodes []*node, sym string, d time.Duration) {
	end := time.Now().Add(d)
	var since int64
	for i := 0; time.Now().Before(end); i++ {
		a := nodes[i%len(nodes)].p.Poll(context.Background(), sym, since, 0)
		if a.Quote != nil {
			since = a.Quote.Time
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestOneFetchPerIntervalForTheCluster: two nodes, widgets polling both,
// yet each interval sees at most one upstream fetch per symbol; when the
// node that fetched stops, the other takes over within an interval.
func TestOneFetchPerIntervalForTheCluster(t *testing.T) {
	ns := natstest.Run(t)
	const interval = 200 * time.Millisecond
	src := newCounting(interval)
	a := startPoller(t, ns, src, "a", nil)
	b := startPoller(t, ns, src, "b", nil)
	start := time.Now()
	poll([]*node{a, b}, "IBM", 2*time.Second)
	total, maxPerSlot := src.counts("IBM")
	// The pollers keep fetching after poll returns: the bound is the
	// number of interval slots that began since start, whatever the
	// machine's speed; never 2 fetches in one slot.
	slots := int(time.Since(start)/interval) + 1
	if maxPerSlot != 1 || total < 2 || total > slots {
		t.Errorf("%d fetches in %d slots of 200 ms, at most %d in one slot; want about one per slot, never 2 in one", total, slots, maxPerSlot)
	}
	a.stop()
	poll([]*node{b}, "IBM", time.Second)
	after, maxPerSlot := src.counts("IBM")
	if after-total < 1 || maxPerSlot != 1 {
		t.Errorf("after node a stopped: %d more fetches in 1 s, want about 5", after-total)
	}
	e, ok := b.p.Latest("IBM")
	if !ok || e.Quote == nil || time.Since(time.UnixMilli(e.Fetched)) > 2*interval {
		t.Errorf("node b's quote is stale: %+v", e)
	}
}

// TestBudgetNeverExceeded: the cluster-wide daily budget holds across
// nodes and symbols, even when more symbols are wanted than it allows, and
// widgets of the symbols left out are told why and to wait.
func TestBudgetNeverExceeded(t *testing.T) {
	ns := natstest.Run(t)
	src := newCounting(50 * time.Millisecond)
	budget := func(c *quotes.PollerConfig) { c.BudgetPerDay = 3 }
	nodes := []*node{startPoller(t, ns, src, "a", budget), startPoller(t, ns, src, "b", budget)}
	symbols := []string{"IBM", "AAPL", "MSFT", "NVDA", "KO"}
	var wg sync.WaitGroup
	for _, sym := range symbols {
		wg.Go(func() { poll(nodes, sym, time.Second) })
	}
	wg.Wait()
	calls := 0
	var denied string
	for _, sym := range symbols {
		n, _ := src.counts(sym)
		calls += n
		if n == 0 {
			denied = sym
		}
	}
	if calls != 3 {
		t.Errorf("%d upstream calls, want exactly the budget of 3", calls)
	}
	a := nodes[0].p.Poll(context.Background(), denied, 0, 0)
	if a.Quote != nil || !strings.Contains(a.Error, "budget") || a.CallIn == nil || *a.CallIn < time.Minute {
		t.Errorf("%s after the budget: %+v; want the reason and a long callIn", denied, a)
	}
}

// TestBudgetSpreadsFetches: with a budget that cannot keep up with the
// source's pace, fetches slow down so that it lasts, and callIn lengthens
// with them.
func TestBudgetSpreadsFetches(t *testing.T) {
	ns := natstest.Run(t)
	src := newCounting(50 * time.Millisecond)
	// 600 a minute for 2 symbols: one fetch per symbol every 200 ms.
	n := startPoller(t, ns, src, "a", func(c *quotes.PollerConfig) { c.BudgetPerMinute = 600 })
	n.p.Want("AAPL")
	poll([]*node{n}, "IBM", 2*time.Second)
	total, _ := src.counts("IBM")
	// About 10, fewer on a loaded machine; never the 40 of the source's pace.
	if total < 1 || total > 11 {
		t.Errorf("%d fetches in 2 s; want about 10 (every 200 ms), not 40 (every 50 ms)", total)
	}
	if a := n.p.Poll(context.Background(), "IBM", 0, 0); a.CallIn == nil || *a.CallIn < 100*time.Millisecond {
		t.Errorf("callIn %v; want it paced to the 200 ms fetches", a.CallIn)
	}
}

func TestUpstreamErrorsBackOff(t *testing.T) {
	ns := natstest.Run(t)
	const interval = 100 * time.Millisecond
	src := newCounting(interval)
	n := startPoller(t, ns, src, "a", nil)
	first := n.p.Poll(context.Background(), "IBM", 0, 0)
	if first.Quote == nil || first.Error != "" {
		t.Fatalf("first poll: %+v", first)
	}
	if q := first.Quote; q.StaleAt != q.Time+quotes.StaleAfter(interval).Milliseconds() {
		t.Errorf("fresh quote stale at %d, want %d", q.StaleAt, q.Time+quotes.StaleAfter(interval).Milliseconds())
	}
	src.mu.Lock()
	src.fail = errors.New("connection refused")
	src.mu.Unlock()
	poll([]*node{n}, "IBM", 1500*time.Millisecond)
	total, _ := src.counts("IBM")
	// Backing off 200, 400, 800 ms… after the first failure: a handful of
	// calls in 1.5 s, not 15.
	if total > 6 {
		t.Errorf("%d upstream calls while failing, want few", total)
	}
	a := n.p.Poll(context.Background(), "IBM", 0, 0)
	if a.Quote == nil || a.Quote.Price != first.Quote.Price || a.Error != "upstream unavailable" || *a.CallIn < 2*interval {
		t.Errorf("while failing: %+v (callIn %v); want the stale quote, the error and a backoff", a, *a.CallIn)
	}
	if !a.Quote.Stale {
		t.Errorf("the quote served while the upstream fails is not marked stale: %+v", a.Quote)
	}
	if unknown := n.p.Poll(context.Background(), "NOPE", 0, 0); unknown.CallIn != nil || unknown.Error == "" {
		t.Errorf("unknown symbol: %+v, want callIn nil", unknown)
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
