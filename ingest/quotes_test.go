package ingest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulse-analytics/pulse/natsutil/natstest"
	"github.com/pulse-analytics/pulse/quotes"
)

// startQuoteNode runs an ingest node with a quote poller on a simulated
// source with the given interval; it returns the node's base URL.
func startQuoteNode(t testing.TB, interval time.Duration, edits ...func(*Config)) string {
	t.Helper()
	ns := natstest.Run(t)
	kv := ns.Stores.Quotes
	p, err := quotes.NewPoller(quotes.PollerConfig{
		Source: quotes.NewSimulated(quotes.SimulatedConfig{Seed: 1, Interval: interval}),
		KV:     kv, Publisher: ns.JS, NodeID: "n1", Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	cfg := Config{Publisher: ns.JS, Sites: staticSites{"demo": {Key: "demo"}}, Quotes: p, Logger: slog.New(slog.DiscardHandler)}
	for _, edit := range edits {
		edit(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		_ = s.Shutdown(context.Background())
		hs.Close()
		cancel()
		<-done
	})
	return hs.URL
}

type quoteBody struct {
	Quote  *quotes.Quote `json:"quote"`
	AsOf   int64         `json:"asOf"`
	Stale  *bool         `json:"stale"`
	Error  string        `json:"error"`
	CallIn *int64        `json:"callIn"`
}

func getQuote(t testing.TB, url string) (int, quoteBody, http.Header) {
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b quoteBody
	if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	return resp.StatusCode, b, resp.Header
}

func TestQuoteAPI(t *testing.T) {
	base := startQuoteNode(t, time.Second)
	tests := []struct {
		name     string
		query    string
		status   int
		quote    bool
		callInOK bool // callIn present (not null)
		err      string
	}{
		{"known symbol", "symbol=IBM", http.StatusOK, true, true, ""},
		{"lower case is fine", "symbol=aapl", http.StatusOK, true, true, ""},
		{"unknown symbol stops the widget", "symbol=ZZZZ", http.StatusNotFound, false, false, "unknown symbol ZZZZ"},
		{"invalid symbol", "symbol=%3Cscript%3E", http.StatusBadRequest, false, false, "invalid symbol"},
		{"too long", "symbol=ABCDEFGHIJKLMNOP", http.StatusBadRequest, false, false, "invalid symbol"},
		{"missing", "", http.StatusBadRequest, false, false, "invalid symbol"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, b, h := getQuote(t, base+"/v1/quote?"+tt.query)
			if status != tt.status || (b.Quote != nil) != tt.quote || (b.CallIn != nil) != tt.callInOK || !strings.Contains(b.Error, tt.err) {
				t.Errorf("got %d %+v", status, b)
			}
			if h.Get("Access-Control-Allow-Origin") != "*" {
				t.Errorf("no CORS header")
			}
			if b.CallIn != nil && (*b.CallIn < 100 || *b.CallIn > 1300) {
				t.Errorf("callIn %d ms for a 1 s interval", *b.CallIn)
			}
			if b.Stale == nil {
				t.Errorf("no stale field in %+v", b)
			}
			if b.Quote != nil && (b.AsOf != b.Quote.Time || b.Quote.StaleAt <= b.Quote.Time || *b.Stale != b.Quote.Stale) {
				t.Errorf("asOf %d, stale %v for %+v; want the quote's time and its stale mark", b.AsOf, *b.Stale, b.Quote)
			}
		})
	}
}

// TestBogusSymbolFlood: many distinct valid-looking symbols never reach
// the source and leave no state behind.
func TestBogusSymbolFlood(t *testing.T) {
	base := startQuoteNode(t, time.Second)
	for i := range 500 {
		status, b, _ := getQuote(t, fmt.Sprintf("%s/v1/quote?symbol=Q%04d", base, i))
		if status != http.StatusNotFound || b.CallIn != nil {
			t.Fatalf("bogus symbol answered %d %+v", status, b)
		}
	}
}

func TestQuoteStream(t *testing.T) {
	base := startQuoteNode(t, 300*time.Millisecond)
	open := func(lastID string) (*http.Response, *bufio.Reader) {
		req, _ := http.NewRequest("GET", base+"/v1/quotes/stream?symbols=IBM,msft", nil)
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("stream: %s", resp.Status)
		}
		return resp, bufio.NewReader(resp.Body)
	}
	next := func(r *bufio.Reader) (id string, q quotes.Quote) {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("stream ended: %v", err)
			}
			if v, ok := strings.CutPrefix(line, "id: "); ok {
				id = strings.TrimSpace(v)
			}
			if v, ok := strings.CutPrefix(line, "data: "); ok {
				_ = json.Unmarshal([]byte(v), &q)
				return id, q
			}
		}
	}
	_, r := open("")
	seen := map[string]int{}
	lastOf := map[string]string{}
	var lastID string
	for range 6 {
		id, q := next(r)
		// ids are fetch times: per symbol they only grow.
		if prev := lastOf[q.Symbol]; prev != "" && id <= prev {
			t.Errorf("%s: id %s after %s", q.Symbol, id, prev)
		}
		lastOf[q.Symbol] = id
		seen[q.Symbol]++
		lastID = max(lastID, id)
	}
	if seen["IBM"] < 2 || seen["MSFT"] < 2 {
		t.Errorf("quotes per symbol %v: want both, updated", seen)
	}
	// Resuming with the last id sends only quotes fetched after it.
	_, r2 := open(lastID)
	id, _ := next(r2)
	if id <= lastID {
		t.Errorf("resumed stream repeated %s (last id %s)", id, lastID)
	}
	for _, bad := range []string{"symbols=IBM,%3Cx%3E", "symbols=NOPE", "symbols=" + distinctSymbols(maxStreamSymbols+1)} {
		resp, err := http.Get(base + "/v1/quotes/stream?" + bad)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode < 400 || resp.StatusCode >= 500 {
			t.Errorf("%s: %s", bad, resp.Status)
		}
	}
}

// goroutinesIn counts the goroutines with fn in their stacks.
func goroutinesIn(fn string) int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, fn) {
			n++
		}
	}
	return n
}

func distinctSymbols(n int) string {
	var syms []string
	for i := range n {
		syms = append(syms, fmt.Sprint("S", i))
	}
	return strings.Join(syms, ",")
}

// TestQuoteStreamBounds: a stream's symbols are deduplicated, a stream is
// one goroutine however many symbols it has, and streams are bounded per
// client address and per node.
func TestQuoteStreamBounds(t *testing.T) {
	base := startQuoteNode(t, 200*time.Millisecond, func(c *Config) { c.MaxQuoteStreamsPerIP = 3 })
	open := func(base, query string) *http.Response {
		t.Helper()
		resp, err := http.Get(base + "/v1/quotes/stream?" + query)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	open(base, "symbols=MSFT")
	resp := open(base, "symbols="+strings.Repeat("IBM,ibm,", 30)+"IBM,AAPL,MSFT")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("repeated symbols: %s", resp.Status)
	}
	// One goroutine per stream, not one per symbol.
	if n := goroutinesIn("serveQuoteStream"); n != 2 {
		t.Errorf("two streams, one of three symbols named 63 times, run in %d goroutines", n)
	}
	r := bufio.NewReader(resp.Body)
	seen := map[string]int{}
	for len(seen) < 3 || seen["IBM"] < 3 {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if data, ok := strings.CutPrefix(line, "data: "); ok {
			var q quotes.Quote
			if err := json.Unmarshal([]byte(data), &q); err != nil {
				t.Fatalf("quote %q: %v", data, err)
			}
			seen[q.Symbol]++
		}
	}
	if len(seen) != 3 {
		t.Errorf("quotes of %v, want IBM, AAPL and MSFT", seen)
	}
	open(base, "symbols=AAPL")
	if got := open(base, "symbols=IBM").StatusCode; got != http.StatusTooManyRequests {
		t.Errorf("a fourth stream from one address: %d, want 429", got)
	}
	resp.Body.Close()
	waitFor(t, 5*time.Second, "the closed stream counted out", func() bool { return open(base, "symbols=IBM").StatusCode == http.StatusOK })

	// The node's own bound, whatever the addresses.
	small := startQuoteNode(t, 200*time.Millisecond, func(c *Config) { c.MaxQuoteStreams = 2 })
	open(small, "symbols=IBM")
	open(small, "symbols=IBM")
	if got := open(small, "symbols=IBM").StatusCode; got != http.StatusServiceUnavailable {
		t.Errorf("a stream over the node's bound: %d, want 503", got)
	}
}

// TestWidgetsFutilePollsAndStaleness runs many widgets that obey callIn
// against a real node and measures what DESIGN.md aims for: few futile
// polls (nothing newer than the widget had) and little staleness (age of
// the data when served), reported as shares of polls and of the interval.
// The bounds asserted are loose, for regressions; the figures of quiet
// runs go to the README.
func TestWidgetsFutilePollsAndStaleness(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for 10 s")
	}
	const (
		interval = time.Second
		widgets  = 200
		run      = 10 * time.Second
	)
	base := startQuoteNode(t, interval)
	symbols := []string{"IBM", "AAPL", "MSFT", "NVDA"}
	var mu sync.Mutex
	var polls, futile, stale int
	var staleness []time.Duration
	var wg sync.WaitGroup
	end := time.Now().Add(run)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: widgets}}
	for i := range widgets {
		wg.Go(func() {
			sym := symbols[i%len(symbols)]
			var since int64
			// Widgets start at random moments, like page loads.
			time.Sleep(time.Duration(i) * interval / widgets)
			for time.Now().Before(end) {
				resp, err := client.Get(base + "/v1/quote?symbol=" + sym + "&since=" + fmt.Sprint(since))
				if err != nil {
					t.Error(err)
					return
				}
				var b quoteBody
				_ = json.NewDecoder(resp.Body).Decode(&b)
				resp.Body.Close()
				now := time.Now()
				if b.Quote == nil || b.CallIn == nil {
					t.Errorf("poll: %+v", b)
					return
				}
				mu.Lock()
				polls++
				if b.Quote.Stale {
					stale++
				}
				if b.Quote.Time <= since {
					futile++
				}
				staleness = append(staleness, now.Sub(time.UnixMilli(b.Quote.Time)))
				mu.Unlock()
				since = b.Quote.Time
				time.Sleep(time.Duration(*b.CallIn) * time.Millisecond)
			}
		})
	}
	wg.Wait()
	slices.Sort(staleness)
	p50, p99 := staleness[len(staleness)/2], staleness[len(staleness)*99/100]
	futileShare := float64(futile) / float64(polls)
	t.Logf("%d widgets, %d polls in %v: futile %.1f%%, staleness p50 %.2f×, p99 %.2f× the %v interval, %.1f%% answers marked stale",
		widgets, polls, run, 100*futileShare, p50.Seconds()/interval.Seconds(), p99.Seconds()/interval.Seconds(), interval, 100*float64(stale)/float64(polls))
	// A widget's first poll is futile by definition (it had nothing), so
	// the share includes widgets/polls of unavoidable ones. On a machine
	// busy with other tests the poller's fetches come late and more polls
	// find nothing new (15 % was seen in CI-like runs), so the bound only
	// catches a broken policy: one that ignores when data is due makes
	// half or more of the polls futile. The goals themselves (under 5 %,
	// younger than 1.2 intervals) are held on synctest's clock, in
	// quotes.TestCallInPolicyMeetsItsGoals.
	if futileShare > 0.35 || p50 > interval {
		t.Errorf("futile %.1f%%, staleness p50 %v: far off the goals (5%%, 1.2× interval)", 100*futileShare, p50)
	}
}

// BenchmarkQuoteEndpoint measures GET /v1/quote for a cached quote over
// loopback HTTP with keep-alive, as many widgets would poll it:
// `go test -run '^$' -bench QuoteEndpoint -benchmem ./ingest`.
func BenchmarkQuoteEndpoint(b *testing.B) {
	base := startQuoteNode(b, time.Minute)
	if code, _, _ := getQuote(b, base+"/v1/quote?symbol=IBM"); code != http.StatusOK {
		b.Fatalf("status %d", code)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	url := base + "/v1/quote?symbol=IBM&since=1"
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Get(url)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}
