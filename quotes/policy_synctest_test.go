package quotes_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pulse-analytics/pulse/quotes"
)

// The policy test runs the poller and its widgets on testing/synctest's
// clock, so it can hold them to the goals (futile polls under 5 %, data
// served younger than 1.2 intervals) instead of the loose bounds a shared
// machine's clock forces on TestWidgetsFutilePollsAndStaleness. Its bucket
// is in memory: a real NATS server's sockets and disk are not durably
// blocking, so they cannot run in a bubble. The real bucket is tested
// in poller_test.go.

// memKV is a bucket in memory with the semantics the poller relies on:
// revisions, Create failing on an existing key, Update on a changed one,
// and a watch of puts.
type memKV struct {
	mu       sync.Mutex
	rev      uint64
	entries  map[string]*memEntry
	watchers []*memWatcher
}

type memEntry struct {
	key   string
	value []byte
	rev   uint64
}

func (e *memEntry) Bucket() string                  { return "mem" }
func (e *memEntry) Key() string                     { return e.key }
func (e *memEntry) Value() []byte                   { return e.value }
func (e *memEntry) Revision() uint64                { return e.rev }
func (e *memEntry) Created() time.Time              { return time.Time{} }
func (e *memEntry) Delta() uint64                   { return 0 }
func (e *memEntry) Operation() jetstream.KeyValueOp { return jetstream.KeyValuePut }

type memWatcher struct {
	prefix  string
	updates chan jetstream.KeyValueEntry
	once    sync.Once
}

func (w *memWatcher) Updates() <-chan jetstream.KeyValueEntry { return w.updates }
func (w *memWatcher) Stop() error {
	w.once.Do(func() { close(w.updates) })
	return nil
}

func newMemKV() *memKV { return &memKV{entries: make(map[string]*memEntry)} }

func (kv *memKV) Get(_ context.Context, key string) (jetstream.KeyValueEntry, error) {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	if e := kv.entries[key]; e != nil {
		return e, nil
	}
	return nil, jetstream.ErrKeyNotFound
}

// set stores value under key at the next revision and tells the watchers;
// kv.mu is held.
func (kv *memKV) set(key string, value []byte) uint64 {
	kv.rev++
	e := &memEntry{key: key, value: slices.Clone(value), rev: kv.rev}
	kv.entries[key] = e
	for _, w := range kv.watchers {
		if strings.HasPrefix(key, w.prefix) {
			w.updates <- e // buffered far beyond this test's puts
		}
	}
	return e.rev
}

func (kv *memKV) Put(_ context.Context, key string, value []byte) (uint64, error) {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	return kv.set(key, value), nil
}

func (kv *memKV) Create(_ context.Context, key string, value []byte, _ ...jetstream.KVCreateOpt) (uint64, error) {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	if kv.entries[key] != nil {
		return 0, jetstream.ErrKeyExists
	}
	return kv.set(key, value), nil
}

func (kv *memKV) Update(_ context.Context, key string, value []byte, revision uint64) (uint64, error) {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	if e := kv.entries[key]; e == nil || e.rev != revision {
		return 0, jetstream.ErrKeyRevisionMismatch
	}
	return kv.set(key, value), nil
}

func (kv *memKV) Watch(_ context.Context, keys string, _ ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	prefix, ok := strings.CutSuffix(keys, "*")
	if !ok {
		return nil, errors.New("memKV watches key prefixes only, like q.*")
	}
	kv.mu.Lock()
	defer kv.mu.Unlock()
	w := &memWatcher{prefix: prefix, updates: make(chan jetstream.KeyValueEntry, 1<<16)}
	for _, e := range kv.entries {
		if strings.HasPrefix(e.key, prefix) {
			w.updates <- e
		}
	}
	w.updates <- nil // the initial values are in
	kv.watchers = append(kv.watchers, w)
	return w, nil
}

// discard takes the poller's published quotes and statistics.
type discard struct{}

func (discard) PublishMsg(context.Context, *nats.Msg, ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	return &jetstream.PubAck{}, nil
}

// policyRun is what widgets saw in one run: the share of futile polls and
// the age of the data served at the median and the 99th percentile, in
// intervals.
type policyRun struct {
	polls          int
	futile         float64
	ageP50, ageP99 float64
}

// runWidgets runs a poller and widgets widgets on 4 symbols, arriving over
// the first interval, each waiting wait(callIn) between polls, for run of
// the bubble's clock. Call it inside synctest.Test.
func runWidgets(t *testing.T, interval time.Duration, widgets int, run time.Duration, wait func(callIn time.Duration) time.Duration) policyRun {
	p, err := quotes.NewPoller(quotes.PollerConfig{
		Source: quotes.NewSimulated(quotes.SimulatedConfig{Seed: 1, Interval: interval}),
		KV:     newMemKV(), Publisher: discard{}, NodeID: "a",
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()

	symbols := []string{"IBM", "AAPL", "MSFT", "NVDA"}
	var mu sync.Mutex
	var polls, futile int
	var ages []time.Duration
	end := time.Now().Add(run)
	var wg sync.WaitGroup
	for i := range widgets {
		wg.Go(func() {
			time.Sleep(time.Duration(i) * interval / time.Duration(widgets)) // page loads spread out
			var since int64
			for time.Now().Before(end) {
				a := p.Poll(ctx, symbols[i%len(symbols)], since, 0)
				if a.Quote == nil || a.CallIn == nil {
					t.Errorf("poll: %+v", a)
					return
				}
				mu.Lock()
				polls++
				if a.Quote.Time <= since {
					futile++
				}
				ages = append(ages, time.Since(time.UnixMilli(a.Quote.Time)))
				mu.Unlock()
				since = a.Quote.Time
				time.Sleep(wait(*a.CallIn))
			}
		})
	}
	wg.Wait()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	slices.Sort(ages)
	in := func(d time.Duration) float64 { return d.Seconds() / interval.Seconds() }
	return policyRun{polls, float64(futile) / float64(polls), in(ages[len(ages)/2]), in(ages[len(ages)*99/100])}
}

// TestCallInPolicyMeetsItsGoals: 200 widgets polling as callIn tells them
// for ten minutes of the bubble's clock meet the goals: under 5 % of the
// polls futile (nothing newer than the widget had), and the data served
// younger than 1.2 intervals at the median, 2 at the 99th percentile.
// Widgets that poll every second instead, as a fixed-interval widget
// would, miss the first goal by far: the measure tells them apart.
func TestCallInPolicyMeetsItsGoals(t *testing.T) {
	const interval = 5 * time.Second
	for _, tt := range []struct {
		name     string
		wait     func(time.Duration) time.Duration
		meetsAll bool
	}{
		{"as callIn says", func(callIn time.Duration) time.Duration { return callIn }, true},
		{"every second", func(time.Duration) time.Duration { return time.Second }, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := runWidgets(t, interval, 200, 10*time.Minute, tt.wait)
				t.Logf("%d polls: %.2f %% futile, data %.2f× the interval old at the median, %.2f× at p99",
					r.polls, 100*r.futile, r.ageP50, r.ageP99)
				meets := r.futile < 0.05 && r.ageP50 < 1.2 && r.ageP99 < 2
				if meets != tt.meetsAll {
					t.Errorf("goals met: %v, want %v", meets, tt.meetsAll)
				}
			})
		})
	}
}

// TestBudgetPacesFetchesExactly: with a budget that cannot keep up with
// the source's pace (600 calls a minute for 2 symbols: one fetch per
// symbol every 200 ms, where the source would allow every 50 ms), the
// poller fetches each symbol exactly at the budget's pace, and callIn
// follows it. TestBudgetSpreadsFetches checks the same on a real bucket
// with the loose bounds a shared machine's clock allows.
func TestBudgetPacesFetchesExactly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newCounting(50 * time.Millisecond)
		p, err := quotes.NewPoller(quotes.PollerConfig{
			Source: src, KV: newMemKV(), Publisher: discard{}, NodeID: "a",
			BudgetPerMinute: 600, Logger: slog.New(slog.DiscardHandler),
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- p.Run(ctx) }()
		p.Want("AAPL")
		end := time.Now().Add(2 * time.Second)
		var callIn time.Duration
		for time.Now().Before(end) {
			a := p.Poll(ctx, "IBM", 0, 0)
			if a.CallIn == nil {
				t.Fatalf("poll: %+v", a)
			}
			callIn = *a.CallIn
			time.Sleep(50 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		for _, sym := range []string{"IBM", "AAPL"} {
			// One fetch per 200 ms from the start to the end of the 2 s:
			// at 0, 200, … 2,000 ms.
			if n, _ := src.counts(sym); n != 11 {
				t.Errorf("%s: %d fetches in 2 s, want 11 (every 200 ms)", sym, n)
			}
		}
		if callIn < 100*time.Millisecond || callIn > 400*time.Millisecond {
			t.Errorf("callIn %v, want it paced to the 200 ms fetches", callIn)
		}
	})
}
