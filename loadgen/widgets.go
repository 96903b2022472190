package loadgen

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// WidgetConfig configures a run of quote widgets: each polls
// GET /v1/quote for its symbol and waits as long as the answer's callIn
// says, as quote.js does.
type WidgetConfig struct {
	// URL is the ingest node, loopback only.
	URL string
	// MetricsURL is the node's metrics listener (its -metrics-addr),
	// loopback only. Default http://127.0.0.1:2113.
	MetricsURL string
	// Widgets is how many widgets poll. Default 1,000.
	Widgets int
	// Symbols are spread over the widgets. Default IBM, AAPL, MSFT.
	Symbols []string
	// Duration bounds the run. Default 30 s, at most 10 min.
	Duration time.Duration
	// Ramp spreads the widgets' first polls. Default 5 s.
	Ramp time.Duration
	// Sources spreads connections over 127.0.0.1 to .N. Default 4.
	Sources int
}

// WidgetReport is what a widget run measured. UpstreamFetches comes from
// the node's pulse_quote_upstream_fetches_total.
type WidgetReport struct {
	Widgets         int     `json:"widgets"`
	Seconds         float64 `json:"seconds"`
	Polls           int64   `json:"polls"`
	PollsPerSecond  float64 `json:"pollsPerSecond"`
	Futile          int64   `json:"futile"`
	FutileRatio     float64 `json:"futileRatio"`
	Errors          int64   `json:"errors"`
	Stopped         int64   `json:"stopped"`
	UpstreamFetches float64 `json:"upstreamFetches"`
	// StalenessP50Ms and StalenessP99Ms are the age of the quote data
	// when served.
	StalenessP50Ms float64 `json:"stalenessP50Ms"`
	StalenessP99Ms float64 `json:"stalenessP99Ms"`
}

// RunWidgets runs quote widgets against an ingest node until the
// duration has passed or ctx ends.
func RunWidgets(ctx context.Context, cfg WidgetConfig) (WidgetReport, error) {
	if cfg.MetricsURL == "" {
		cfg.MetricsURL = "http://127.0.0.1:2113"
	}
	for _, u := range []string{cfg.URL, cfg.MetricsURL} {
		if err := checkLoopback(u); err != nil {
			return WidgetReport{}, err
		}
	}
	if cfg.Widgets <= 0 {
		cfg.Widgets = 1000
	}
	if len(cfg.Symbols) == 0 {
		cfg.Symbols = []string{"IBM", "AAPL", "MSFT"}
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 30 * time.Second
	}
	cfg.Duration = min(cfg.Duration, maxDuration)
	if cfg.Ramp <= 0 {
		cfg.Ramp = 5 * time.Second
	}
	if cfg.Sources <= 0 {
		cfg.Sources = 4
	}
	base, _ := url.Parse(cfg.URL)
	metrics, _ := url.Parse(cfg.MetricsURL)
	fetchesBefore, err := upstreamFetches(ctx, metrics)
	if err != nil {
		return WidgetReport{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()

	clients := make([]*http.Client, cfg.Sources)
	for i := range clients {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i))}}
		clients[i] = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			DialContext: d.DialContext, MaxIdleConnsPerHost: cfg.Widgets,
		}}
	}
	var polls, futile, errs, stopped atomic.Int64
	var stale histogram
	start := time.Now()
	var wg sync.WaitGroup
	for i := range cfg.Widgets {
		sym := cfg.Symbols[i%len(cfg.Symbols)]
		client := clients[i%len(clients)]
		wait := cfg.Ramp * time.Duration(i) / time.Duration(cfg.Widgets)
		wg.Go(func() {
			var last int64
			for {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
				a, err := pollQuote(ctx, client, base, sym, last)
				if ctx.Err() != nil {
					return
				}
				polls.Add(1)
				switch {
				case err != nil:
					errs.Add(1)
					wait = time.Second + rand.N(time.Second)
					continue
				case a.CallIn == nil:
					stopped.Add(1)
					return
				case a.Quote == nil || a.Quote.Time <= last:
					futile.Add(1)
				default:
					last = a.Quote.Time
					stale.add(time.Since(time.UnixMilli(a.Quote.Time)), 1)
				}
				wait = time.Duration(*a.CallIn) * time.Millisecond
			}
		})
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	fetchesAfter, err := upstreamFetches(context.Background(), metrics)
	if err != nil {
		return WidgetReport{}, err
	}
	st := stale.summary()
	r := WidgetReport{
		Widgets: cfg.Widgets, Seconds: secs, Polls: polls.Load(), PollsPerSecond: float64(polls.Load()) / secs,
		Futile: futile.Load(), Errors: errs.Load(), Stopped: stopped.Load(),
		UpstreamFetches: fetchesAfter - fetchesBefore, StalenessP50Ms: st.P50, StalenessP99Ms: st.P99,
	}
	if r.Polls > 0 {
		r.FutileRatio = float64(r.Futile) / float64(r.Polls)
	}
	return r, nil
}

type quoteAnswer struct {
	Quote *struct {
		Time int64 `json:"time"`
	} `json:"quote"`
	Error  string `json:"error"`
	CallIn *int64 `json:"callIn"`
}

func pollQuote(ctx context.Context, client *http.Client, base *url.URL, sym string, since int64) (quoteAnswer, error) {
	u := base.JoinPath("/v1/quote")
	u.RawQuery = url.Values{"symbol": {sym}, "since": {strconv.FormatInt(since, 10)}}.Encode()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	resp, err := client.Do(req)
	if err != nil {
		return quoteAnswer{}, err
	}
	defer resp.Body.Close()
	var a quoteAnswer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		return quoteAnswer{}, fmt.Errorf("quote answer: %w", err)
	}
	if a.Error != "" && a.CallIn != nil {
		return a, fmt.Errorf("quote: %s", a.Error)
	}
	return a, nil
}

// upstreamFetches sums pulse_quote_upstream_fetches_total on the node.
func upstreamFetches(ctx context.Context, base *url.URL) (float64, error) {
	series, err := scrape(ctx, base, "pulse_quote_upstream_fetches_total")
	var sum float64
	for _, v := range series {
		sum += v
	}
	return sum, err
}

// scrape reads the series of the metric name from the node's metrics
// listener at base, by their labels ("" for none): {reason="x"} -> 3.
func scrape(ctx context.Context, base *url.URL, name string) (map[string]float64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base.JoinPath("/metrics").String(), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("loadgen: metrics: %w", err)
	}
	defer resp.Body.Close()
	series := make(map[string]float64)
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		labels, ok := strings.CutPrefix(sc.Text(), name)
		if !ok || labels != "" && labels[0] != '{' && labels[0] != ' ' {
			continue
		}
		sp := strings.LastIndexByte(labels, ' ')
		if v, err := strconv.ParseFloat(labels[sp+1:], 64); err == nil {
			series[labels[:sp]] = v
		}
	}
	return series, sc.Err()
}
