package quotes

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSimulatedIsDeterministicAndRealistic(t *testing.T) {
	at := time.Date(2026, 11, 23, 15, 4, 5, 0, time.UTC)
	a := NewSimulated(SimulatedConfig{Seed: 7})
	b := NewSimulated(SimulatedConfig{Seed: 7})
	c := NewSimulated(SimulatedConfig{Seed: 8})
	for sym := range DefaultUniverse {
		qa, qb, qc := a.QuoteAt(sym, at), b.QuoteAt(sym, at), c.QuoteAt(sym, at)
		if qa != qb {
			t.Errorf("%s: same seed, different quotes: %+v vs %+v", sym, qa, qb)
		}
		if qa.Price == qc.Price {
			t.Errorf("%s: different seeds, same price %v", sym, qa.Price)
		}
		if qa.Low > qa.Price || qa.Price > qa.High || qa.Low > qa.Open || qa.Open > qa.High || qa.Volume <= 0 || qa.PrevClose <= 0 {
			t.Errorf("%s: unrealistic quote %+v", sym, qa)
		}
		if d := qa.Price - qa.PrevClose; d-qa.Change > 0.011 || qa.Change-d > 0.011 {
			t.Errorf("%s: change %v, want price-prevClose %v", sym, qa.Change, d)
		}
	}
	// Asking earlier after later gives the same answer as asking fresh.
	later := a.QuoteAt("IBM", at.Add(time.Hour))
	earlier := a.QuoteAt("IBM", at)
	if earlier != b.QuoteAt("IBM", at) || later.Time <= earlier.Time {
		t.Errorf("path not repeatable: %+v, %+v", earlier, later)
	}
	// Prices move each interval and stand within one.
	q1, q2 := a.QuoteAt("IBM", at.Add(time.Second)), a.QuoteAt("IBM", at.Add(6*time.Second))
	if q1 != a.QuoteAt("IBM", at) || q2.Price == q1.Price || q2.Time-q1.Time != 5000 {
		t.Errorf("steps: %+v then %+v", q1, q2)
	}
	// Yesterday's close is today's previous close.
	closeTime := time.Date(2026, 11, 22, 23, 59, 59, 0, time.UTC)
	if y, d := a.QuoteAt("IBM", closeTime), a.QuoteAt("IBM", closeTime.Add(2*time.Second)); y.Price != d.PrevClose {
		t.Errorf("close %v, next previous close %v", y.Price, d.PrevClose)
	}
	if _, err := a.Fetch(context.Background(), "NOPE"); !errors.Is(err, ErrUnknownSymbol) {
		t.Errorf("unknown symbol: %v", err)
	}
}

func TestSimulatedMarketHours(t *testing.T) {
	nyse, _ := NYSE()
	s := NewSimulated(SimulatedConfig{Seed: 1, Market: nyse})
	fri := time.Date(2026, 11, 27, 16, 0, 0, 0, nyse.Location)
	sat := time.Date(2026, 11, 28, 12, 0, 0, 0, nyse.Location)
	if a, b := s.QuoteAt("IBM", fri), s.QuoteAt("IBM", sat); a != b {
		t.Errorf("closed market moved: %+v, %+v", a, b)
	}
}

func TestReplay(t *testing.T) {
	start := time.Unix(0, 0)
	now := start
	r, err := OpenReplay(filepath.Join("testdata", "stocks.csv"), ReplayConfig{Step: time.Second, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r.Symbols(), " "); got != "AAPL AMZN GOOG IBM MSFT" {
		t.Errorf("symbols %s", got)
	}
	q0, _ := r.Fetch(context.Background(), "MSFT")
	now = now.Add(1500 * time.Millisecond)
	q1, _ := r.Fetch(context.Background(), "MSFT")
	// MSFT: Jan 2000 39.81, Feb 2000 36.35 (the first rows of stocks.csv).
	if q0.Price != 39.81 || q1.Price != 36.35 || q1.PrevClose != 39.81 || q1.Time != 1000 || !strings.Contains(q1.Source, "Feb 1 2000") {
		t.Errorf("replay: %+v then %+v", q0, q1)
	}
	if q1.Change != -3.46 || q1.Low != 36.35 || q1.High != 39.81 {
		t.Errorf("derived fields: %+v", q1)
	}
	if _, err := r.Fetch(context.Background(), "TSLA"); !errors.Is(err, ErrUnknownSymbol) {
		t.Errorf("unknown: %v", err)
	}
	for name, body := range map[string]string{
		"bad header": "a,b,c\n",
		"bad price":  "symbol,date,price\nIBM,Jan 1 2000,abc\n",
		"bad symbol": "symbol,date,price\nibm!,Jan 1 2000,1\n",
		"no rows":    "symbol,date,price\n",
	} {
		if _, err := NewReplay(strings.NewReader(body), ReplayConfig{}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// fakeAlphaVantage answers like the real API, from testdata/alphavantage.
func fakeAlphaVantage(t *testing.T) *httptest.Server {
	t.Helper()
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if r.URL.Path != "/query" || q.Get("function") != "GLOBAL_QUOTE" || q.Get("apikey") != "demo" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		sym := q.Get("symbol")
		if sym == "LIMIT" {
			w.Header().Set("Retry-After", "30")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		if sym == "DOWN" {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		body, err := os.ReadFile(filepath.Join("testdata", "alphavantage", sym+".json"))
		if err != nil {
			body, _ = os.ReadFile(filepath.Join("testdata", "alphavantage", "unknown.json"))
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
}

func TestAlphaVantage(t *testing.T) {
	srv := fakeAlphaVantage(t)
	defer srv.Close()
	av, err := NewAlphaVantage(AlphaVantageConfig{BaseURL: srv.URL, APIKey: "demo",
		Symbols: []string{"IBM", "NOTE", "INFO", "ERR", "LIMIT", "DOWN", "NOSUCH", "BAD"}})
	if err != nil {
		t.Fatal(err)
	}
	q, err := av.Fetch(context.Background(), "IBM")
	if err != nil {
		t.Fatal(err)
	}
	if q.Symbol != "IBM" || q.Price != 231.41 || q.Open != 229.5 || q.High != 232.62 || q.Low != 228.73 ||
		q.PrevClose != 230.1 || q.Change != 1.31 || q.ChangePercent != 0.5693 || q.Volume != 3453231 || q.Source != "alphavantage" {
		t.Errorf("quote %+v", q)
	}
	var rl *RateLimitError
	for sym, check := range map[string]func(error) bool{
		"NOTE": func(err error) bool { return errors.As(err, &rl) && strings.Contains(rl.Message, "5 calls per minute") },
		"INFO": func(err error) bool {
			return errors.As(err, &rl) && strings.Contains(rl.Message, "25 requests per day")
		},
		"LIMIT":  func(err error) bool { return errors.As(err, &rl) && rl.RetryAfter == 30*time.Second },
		"ERR":    func(err error) bool { return err != nil && strings.Contains(err.Error(), "Invalid API call") },
		"DOWN":   func(err error) bool { return err != nil && strings.Contains(err.Error(), "HTTP 502") },
		"NOSUCH": func(err error) bool { return errors.Is(err, ErrUnknownSymbol) },
		"BAD":    func(err error) bool { return err != nil && strings.Contains(err.Error(), "is not a number") },
		"TSLA":   func(err error) bool { return errors.Is(err, ErrUnknownSymbol) }, // not listed: never asked
	} {
		if _, err := av.Fetch(context.Background(), sym); !check(err) {
			t.Errorf("%s: unexpected error %v", sym, err)
		}
	}
}

func FuzzDecodeGlobalQuote(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "alphavantage", "*.json"))
	for _, p := range files {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		q, err := decodeGlobalQuote(body, time.Unix(1, 0))
		if err != nil {
			return
		}
		if !ValidSymbol(q.Symbol) || !(q.Price > 0) || q.Volume < 0 {
			t.Fatalf("accepted %+v", q)
		}
	})
}
