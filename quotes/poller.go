package quotes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulse-analytics/pulse/event"
	"github.com/pulse-analytics/pulse/store"
)

// Publisher stores messages in JetStream.
type Publisher interface {
	// PublishMsg returns once the stream has stored msg (or found it a
	// duplicate by its Nats-Msg-Id). Safe for concurrent use.
	PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

// KV is what the poller uses of the quotes bucket the cluster's pollers
// share; a jetstream.KeyValue is one.
type KV interface {
	Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error)
	Put(ctx context.Context, key string, value []byte) (uint64, error)
	Create(ctx context.Context, key string, value []byte, opts ...jetstream.KVCreateOpt) (uint64, error)
	Update(ctx context.Context, key string, value []byte, revision uint64) (uint64, error)
	Watch(ctx context.Context, keys string, opts ...jetstream.WatchOpt) (jetstream.KeyWatcher, error)
}

// PollerConfig configures a Poller. Zero fields take the stated defaults.
type PollerConfig struct {
	// Source is the upstream. Required.
	Source Source
	// KV is the quotes bucket the cluster's pollers share. Required.
	KV KV
	// Publisher stores every fetched quote on quotes.<SYMBOL> and the
	// poll statistics. Required.
	Publisher Publisher
	// NodeID names this node. Required.
	NodeID string
	// Market is when the upstream has new prices. Default: always.
	Market Market
	// BudgetPerMinute and BudgetPerDay bound upstream calls for the whole
	// cluster; 0 means no bound.
	BudgetPerMinute, BudgetPerDay int
	// DemandWindow is how long a symbol is fetched after its last poll.
	// Default 2 min: a widget waiting out a long callIn is still there.
	DemandWindow time.Duration
	// FirstQuoteWait is how long a poll for a symbol with no quote yet
	// waits for the first fetch. Default 2 s.
	FirstQuoteWait time.Duration
	// StatsInterval is how often poll statistics are published. Default 5 s.
	StatsInterval time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer receives the poller's metrics. Default: a private registry.
	Registerer prometheus.Registerer
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Entry is the cluster's state of one symbol, in the quotes bucket under
// "q.<SYMBOL>".
type Entry struct {
	Quote *Quote `json:"quote,omitempty"`
	// Slot is the start, in Unix ms, of the interval of the last fetch
	// attempt.
	Slot int64 `json:"slot"`
	// Fetched is when the quote was fetched, in Unix ms.
	Fetched int64 `json:"fetched,omitempty"`
	// NextFresh is when the next fresh quote is expected in every node's
	// cache, in Unix ms.
	NextFresh int64 `json:"nextFresh"`
	// Errors counts consecutive failed fetches; Error is the last one's.
	Errors int    `json:"errors,omitempty"`
	Error  string `json:"error,omitempty"`
	// Unknown is set when the upstream does not know the symbol.
	Unknown bool   `json:"unknown,omitempty"`
	Node    string `json:"node"`
}

// lease is the cluster-wide right to fetch a symbol for one slot.
type lease struct {
	Slot int64  `json:"slot"`
	Node string `json:"node"`
}

// budget counts upstream calls of the current minute and day.
type budget struct {
	Minute      int64 `json:"minute"`
	MinuteCalls int   `json:"minuteCalls"`
	Day         int64 `json:"day"`
	DayCalls    int   `json:"dayCalls"`
}

// Poller runs in every ingest node. For each symbol widgets poll, the nodes
// race for a lease on each upstream interval in the shared bucket; the one
// that wins fetches, stores the quote in the bucket and publishes it, and
// every node serves it from its cache, which follows the bucket. So there is
// one upstream fetch per symbol per interval however many nodes and
// widgets, and when a node dies the next interval's lease goes to another.
type Poller struct {
	cfg     PollerConfig
	log     *slog.Logger
	metrics *pollMetrics
	kick    chan struct{}

	mu      sync.Mutex
	cache   map[string]*Entry
	changed map[string]chan struct{} // closed and replaced on each change
	demand  map[string]time.Time
	latency time.Duration // moving average of fetch plus store time
	stats   event.PollStats
}

// NewPoller returns a Poller; Run starts it.
func NewPoller(cfg PollerConfig) (*Poller, error) {
	if cfg.Source == nil || cfg.KV == nil || cfg.Publisher == nil || cfg.NodeID == "" {
		return nil, errors.New("quotes poller: source, bucket, publisher and node id are required")
	}
	if cfg.DemandWindow == 0 {
		cfg.DemandWindow = 2 * time.Minute
	}
	if cfg.FirstQuoteWait == 0 {
		cfg.FirstQuoteWait = 2 * time.Second
	}
	if cfg.StatsInterval == 0 {
		cfg.StatsInterval = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	m, err := newPollMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	p := &Poller{
		cfg: cfg, log: cfg.Logger.With("component", "quotes", "source", cfg.Source.Name()), metrics: m,
		kick:    make(chan struct{}, 1),
		cache:   make(map[string]*Entry),
		changed: make(map[string]chan struct{}),
		demand:  make(map[string]time.Time),
		latency: 50 * time.Millisecond,
	}
	p.resetStats(cfg.Now())
	return p, nil
}

// Source returns the poller's source.
func (p *Poller) Source() Source { return p.cfg.Source }

// Run follows the bucket and fetches demanded symbols until ctx ends.
func (p *Poller) Run(ctx context.Context) error {
	w, err := p.cfg.KV.Watch(ctx, store.QuoteKeys)
	if err != nil {
		return fmt.Errorf("quotes poller: watch: %w", err)
	}
	defer func() { _ = w.Stop() }()
	go func() {
		for e := range w.Updates() {
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			var en Entry
			if err := json.Unmarshal(e.Value(), &en); err != nil {
				p.log.Warn("ignoring a malformed quote entry", "key", e.Key(), "err", err)
				continue
			}
			p.store(store.SymbolOfQuoteKey(e.Key()), &en)
		}
	}()

	stats := time.NewTicker(p.cfg.StatsInterval)
	defer stats.Stop()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			p.publishStats(context.Background())
			return nil
		case <-stats.C:
			p.publishStats(ctx)
		case <-p.kick:
		case <-timer.C:
		}
		p.pollDue(ctx)
		timer.Reset(p.untilNextSlot())
	}
}

// interval is how often each symbol is fetched: the source's interval, or
// longer when the budget would not last at that pace for the symbols in
// demand, so that the budget runs out slowly rather than at once.
func (p *Poller) interval() time.Duration {
	iv := p.cfg.Source.Interval()
	p.mu.Lock()
	symbols := time.Duration(max(len(p.demand), 1))
	p.mu.Unlock()
	if n := p.cfg.BudgetPerMinute; n > 0 {
		iv = max(iv, time.Minute*symbols/time.Duration(n))
	}
	if n := p.cfg.BudgetPerDay; n > 0 {
		iv = max(iv, 24*time.Hour*symbols/time.Duration(n))
	}
	return iv
}

// A slot is one interval, named by its start in Unix ms, so slots stay
// comparable when the interval changes.
func (p *Poller) slot(t time.Time) int64 {
	iv := p.interval().Milliseconds()
	return t.UnixMilli() / iv * iv
}

func (p *Poller) slotStart(slot int64) time.Time { return time.UnixMilli(slot) }

// untilNextSlot is how long until the next interval starts, or until the
// earliest retry after errors, whichever comes first.
func (p *Poller) untilNextSlot() time.Duration {
	now := p.cfg.Now()
	next := p.slotStart(p.slot(now)).Add(p.interval())
	p.mu.Lock()
	for _, e := range p.cache {
		if e.Errors > 0 && e.NextFresh > now.UnixMilli() && time.UnixMilli(e.NextFresh).Before(next) {
			next = time.UnixMilli(e.NextFresh)
		}
	}
	p.mu.Unlock()
	return max(next.Sub(now), time.Millisecond)
}

// pollDue fetches every demanded symbol whose quote is older than the
// current interval, one goroutine per symbol.
func (p *Poller) pollDue(ctx context.Context) {
	now := p.cfg.Now()
	slot := p.slot(now)
	open := p.cfg.Market.IsOpen(now)
	var due []string
	p.mu.Lock()
	for sym, at := range p.demand {
		if now.Sub(at) > p.cfg.DemandWindow {
			delete(p.demand, sym)
			continue
		}
		e := p.cache[sym]
		switch {
		case e == nil:
			due = append(due, sym)
		case e.Unknown, e.Slot >= slot:
		case e.Errors > 0 && e.NextFresh > now.UnixMilli():
			// Backing off after errors.
		case !open && e.Quote != nil:
			// Closed market: the last quote stands.
		default:
			due = append(due, sym)
		}
	}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, sym := range due {
		wg.Go(func() { p.fetch(ctx, sym, slot) })
	}
	wg.Wait()
}

// fetch fetches sym for slot if this node wins the slot's lease and the
// budget allows.
func (p *Poller) fetch(ctx context.Context, sym string, slot int64) {
	won, err := p.acquire(ctx, sym, slot)
	if err != nil {
		p.log.Warn("lease", "symbol", sym, "err", err)
		return
	}
	if !won {
		return
	}
	prev := p.entry(sym)
	e := &Entry{Slot: slot, Node: p.cfg.NodeID}
	if prev != nil {
		e.Quote, e.Fetched = prev.Quote, prev.Fetched
	}
	if retryAt, ok, err := p.reserveBudget(ctx); err != nil {
		p.log.Warn("budget", "err", err)
		return
	} else if !ok {
		p.metrics.fetches.WithLabelValues(p.cfg.Source.Name(), "budget").Inc()
		e.Errors, e.Error = 1, "upstream call budget used up; next call at "+retryAt.UTC().Format(time.TimeOnly)
		e.NextFresh = retryAt.UnixMilli()
		p.put(ctx, sym, e)
		return
	}
	start := time.Now()
	fctx, cancel := context.WithTimeout(ctx, max(p.cfg.Source.Interval(), 5*time.Second))
	q, err := p.cfg.Source.Fetch(fctx, sym)
	cancel()
	p.mu.Lock()
	p.stats.Fetches++
	if err != nil {
		p.stats.FetchErrors++
	}
	p.mu.Unlock()
	now := p.cfg.Now()
	var rl *RateLimitError
	switch {
	case errors.Is(err, ErrUnknownSymbol):
		p.metrics.fetches.WithLabelValues(p.cfg.Source.Name(), "unknown").Inc()
		e.Unknown, e.Error = true, "unknown symbol"
	case errors.As(err, &rl):
		p.metrics.fetches.WithLabelValues(p.cfg.Source.Name(), "rate_limited").Inc()
		e.Errors, e.Error = errorCount(prev)+1, "upstream rate limit reached"
		wait := max(rl.RetryAfter, p.backoff(e.Errors))
		e.NextFresh = now.Add(wait).UnixMilli()
	case err != nil:
		p.metrics.fetches.WithLabelValues(p.cfg.Source.Name(), "error").Inc()
		p.log.Warn("upstream fetch failed", "symbol", sym, "err", err)
		e.Errors, e.Error = errorCount(prev)+1, "upstream unavailable"
		e.NextFresh = now.Add(p.backoff(e.Errors)).UnixMilli()
	default:
		p.metrics.fetches.WithLabelValues(p.cfg.Source.Name(), "ok").Inc()
		q.StaleAt = q.Time + StaleAfter(p.interval()).Milliseconds()
		e.Quote, e.Fetched = &q, now.UnixMilli()
		p.publish(ctx, sym, slot, &q)
	}
	if err == nil || errors.Is(err, ErrUnknownSymbol) {
		p.mu.Lock()
		// The next fresh quote reaches the caches about as long after the
		// next interval starts as this one took.
		p.latency = (p.latency*7 + time.Since(start)) / 8
		lat := p.latency
		p.mu.Unlock()
		e.NextFresh = p.nextFresh(now, slot, lat).UnixMilli()
	}
	p.put(ctx, sym, e)
}

func errorCount(e *Entry) int {
	if e == nil {
		return 0
	}
	return e.Errors
}

// backoff is the wait after n consecutive errors: the interval doubled per
// error, capped at 5 minutes.
func (p *Poller) backoff(n int) time.Duration {
	return min(p.interval()<<min(n, 16), maxErrorBackoff)
}

// nextFresh is when the next quote after slot is expected in the caches:
// at the next interval's start plus fetch latency, or at the next opening
// when the market will be closed then.
func (p *Poller) nextFresh(now time.Time, slot int64, latency time.Duration) time.Time {
	next := p.slotStart(slot).Add(p.interval())
	if !p.cfg.Market.IsOpen(next) {
		next = p.cfg.Market.NextOpen(next)
	}
	return next.Add(latency)
}

// acquire takes the lease of sym for slot unless a node already has it.
func (p *Poller) acquire(ctx context.Context, sym string, slot int64) (bool, error) {
	data, _ := json.Marshal(lease{Slot: slot, Node: p.cfg.NodeID})
	key := store.LeaseKey(sym)
	e, err := p.cfg.KV.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		_, err = p.cfg.KV.Create(ctx, key, data)
		return lost(err)
	}
	if err != nil {
		return false, err
	}
	var l lease
	if json.Unmarshal(e.Value(), &l) == nil && l.Slot >= slot {
		return false, nil
	}
	_, err = p.cfg.KV.Update(ctx, key, data, e.Revision())
	return lost(err)
}

// lost turns a failed compare-and-set into "another node won".
func lost(err error) (bool, error) {
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		return false, nil
	default:
		return false, err
	}
}

// reserveBudget counts one upstream call against the cluster's budget,
// with compare-and-set so that concurrent nodes never overspend. It
// returns false and when the budget allows the next call when it is used up.
func (p *Poller) reserveBudget(ctx context.Context) (time.Time, bool, error) {
	if p.cfg.BudgetPerMinute == 0 && p.cfg.BudgetPerDay == 0 {
		return time.Time{}, true, nil
	}
	key := store.BudgetKey(p.cfg.Source.Name())
	for range 20 {
		now := p.cfg.Now().UTC()
		minute, day := now.Unix()/60, now.Unix()/86400
		var b budget
		var rev uint64
		e, err := p.cfg.KV.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return time.Time{}, false, err
		default:
			rev = e.Revision()
			_ = json.Unmarshal(e.Value(), &b)
		}
		if b.Minute != minute {
			b.Minute, b.MinuteCalls = minute, 0
		}
		if b.Day != day {
			b.Day, b.DayCalls = day, 0
		}
		if p.cfg.BudgetPerDay > 0 && b.DayCalls >= p.cfg.BudgetPerDay {
			return time.Unix((day+1)*86400, 0), false, nil
		}
		if p.cfg.BudgetPerMinute > 0 && b.MinuteCalls >= p.cfg.BudgetPerMinute {
			return time.Unix((minute+1)*60, 0), false, nil
		}
		b.MinuteCalls++
		b.DayCalls++
		data, _ := json.Marshal(b)
		if rev == 0 {
			_, err = p.cfg.KV.Create(ctx, key, data)
		} else {
			_, err = p.cfg.KV.Update(ctx, key, data, rev)
		}
		if ok, err := lost(err); err != nil {
			return time.Time{}, false, err
		} else if ok {
			return time.Time{}, true, nil
		}
		// Another node counted a call in between: read again.
	}
	return time.Time{}, false, errors.New("budget: too much contention")
}

func (p *Poller) put(ctx context.Context, sym string, e *Entry) {
	data, _ := json.Marshal(e)
	if _, err := p.cfg.KV.Put(ctx, store.QuoteKey(sym), data); err != nil {
		p.log.Warn("quote not stored", "symbol", sym, "err", err)
	}
	p.store(sym, e)
}

func (p *Poller) publish(ctx context.Context, sym string, slot int64, q *Quote) {
	data, _ := json.Marshal(q)
	msg := &nats.Msg{Subject: event.QuoteSubject(sym), Data: data, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, sym+":"+strconv.FormatInt(slot, 10))
	if _, err := p.cfg.Publisher.PublishMsg(ctx, msg); err != nil {
		p.log.Warn("quote not published", "symbol", sym, "err", err)
	}
}

// store puts e in the cache, unless the cache has a newer one, and wakes
// whoever waits for the symbol.
func (p *Poller) store(sym string, e *Entry) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if old := p.cache[sym]; old != nil && old.Slot > e.Slot {
		return
	}
	p.cache[sym] = e
	if ch := p.changed[sym]; ch != nil {
		close(ch)
		delete(p.changed, sym)
	}
}

func (p *Poller) entry(sym string) *Entry {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cache[sym]
}

// Changed returns a channel closed at the symbol's next change.
func (p *Poller) Changed(sym string) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	ch := p.changed[sym]
	if ch == nil {
		ch = make(chan struct{})
		p.changed[sym] = ch
	}
	return ch
}

// Want records that a widget wants sym, so the poller keeps fetching it. A
// symbol the source does not serve is never recorded.
func (p *Poller) Want(sym string) {
	p.mu.Lock()
	_, known := p.demand[sym]
	p.demand[sym] = p.cfg.Now()
	first := p.cache[sym] == nil && !known
	p.mu.Unlock()
	if first {
		select {
		case p.kick <- struct{}{}:
		default:
		}
	}
}

// Latest returns the cached entry of sym, if any.
func (p *Poller) Latest(sym string) (Entry, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.cache[sym]
	if e == nil {
		return Entry{}, false
	}
	return *e, true
}

// Answer is what a poll gets.
type Answer struct {
	Quote *Quote
	// Error is set when there is no quote to give or the upstream fails.
	Error string
	// CallIn is when to poll next; nil tells the widget to stop.
	CallIn *time.Duration
}

// Poll answers a widget's poll for sym, which holds a quote as of since
// (Unix ms, 0 for none). loadLevel is the node's load level. It counts the
// poll, whether it was futile, and its callIn.
func (p *Poller) Poll(ctx context.Context, sym string, since int64, loadLevel int) Answer {
	if !p.cfg.Source.Has(sym) {
		p.count(nil, since, nil)
		return Answer{Error: "unknown symbol " + sym}
	}
	p.Want(sym)
	e, ok := p.Latest(sym)
	if !ok {
		// The first poll of a symbol waits a little for its first fetch.
		wait := time.NewTimer(p.cfg.FirstQuoteWait)
		select {
		case <-p.Changed(sym):
		case <-wait.C:
		case <-ctx.Done():
		}
		wait.Stop()
		e, ok = p.Latest(sym)
	}
	now := p.cfg.Now()
	s := Situation{
		Now: now, Interval: p.interval(), LoadLevel: loadLevel, Jitter: rand.Float64(),
		MarketOpen: p.cfg.Market.IsOpen(now), NextOpen: p.cfg.Market.NextOpen(now),
	}
	var a Answer
	switch {
	case !ok:
		a.Error = "no quote yet"
		s.NextFresh = now.Add(p.interval() / 10)
	case e.Unknown:
		p.count(nil, since, nil)
		return Answer{Error: "unknown symbol " + sym}
	default:
		// After errors the quote (if any) is served as it is, stale, with
		// the error, and the widget backs off.
		a.Quote, a.Error = served(e.Quote, now), e.Error
		s.NextFresh, s.Errors = time.UnixMilli(e.NextFresh), e.Errors
	}
	d := CallIn(s)
	a.CallIn = &d
	p.count(a.Quote, since, a.CallIn)
	return a
}

// served returns a copy of q as served at now, marked stale when it is;
// nil for none.
func served(q *Quote, now time.Time) *Quote {
	if q == nil {
		return nil
	}
	c := *q
	c.Stale = c.StaleAtTime(now.UnixMilli())
	return &c
}

// count records a poll in the metrics and the period's statistics.
func (p *Poller) count(q *Quote, since int64, callIn *time.Duration) {
	now := p.cfg.Now()
	futile := q == nil || q.Time <= since
	p.metrics.polls.Inc()
	if futile {
		p.metrics.futile.Inc()
	}
	var staleness time.Duration
	if q != nil {
		staleness = now.Sub(time.UnixMilli(q.Time))
		p.metrics.staleness.Observe(staleness.Seconds())
	}
	if callIn != nil {
		p.metrics.callIn.Observe(callIn.Seconds())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.Polls++
	if futile {
		p.stats.Futile++
	}
	if q != nil {
		p.stats.StalenessMs += uint64(max(staleness.Milliseconds(), 0))
	}
	if callIn != nil {
		p.stats.CallIn[event.CallInBucket(callIn.Seconds())]++
	}
}

func (p *Poller) resetStats(now time.Time) {
	p.stats = event.PollStats{Node: p.cfg.NodeID, Start: now.UnixMilli(), CallIn: make([]uint64, len(event.CallInBuckets)+1)}
}

// publishStats sends the period's poll statistics to the aggregator.
func (p *Poller) publishStats(ctx context.Context) {
	now := p.cfg.Now()
	p.mu.Lock()
	st := p.stats
	st.End = now.UnixMilli()
	p.resetStats(now)
	p.mu.Unlock()
	if st.Polls == 0 && st.Fetches == 0 {
		return
	}
	data, _ := json.Marshal(st)
	msg := &nats.Msg{Subject: event.QuoteStatsSubject(p.cfg.NodeID), Data: data, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, "stats:"+p.cfg.NodeID+":"+strconv.FormatInt(st.Start, 10))
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := p.cfg.Publisher.PublishMsg(pctx, msg); err != nil {
		p.log.Warn("poll statistics not published", "err", err)
	}
}

type pollMetrics struct {
	polls, futile     prometheus.Counter
	fetches           *prometheus.CounterVec
	staleness, callIn prometheus.Histogram
}

func newPollMetrics(reg prometheus.Registerer) (*pollMetrics, error) {
	m := &pollMetrics{
		polls: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pulse_quote_polls_total", Help: "Quote polls answered.",
		}),
		futile: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pulse_quote_futile_polls_total", Help: "Quote polls that returned nothing newer than the widget had.",
		}),
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pulse_quote_upstream_fetches_total", Help: "Upstream quote fetches by source and result.",
		}, []string{"source", "result"}),
		staleness: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pulse_quote_staleness_seconds", Help: "Age of the quote data when served.",
			Buckets: []float64{0.5, 1, 2, 5, 10, 30, 60, 300},
		}),
		callIn: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pulse_quote_callin_seconds", Help: "callIn told to widgets.",
			Buckets: event.CallInBuckets,
		}),
	}
	for _, c := range []prometheus.Collector{m.polls, m.futile, m.fetches, m.staleness, m.callIn} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("quotes metrics: %w", err)
		}
	}
	return m, nil
}
