package quotes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// AlphaVantageConfig configures an AlphaVantage source.
type AlphaVantageConfig struct {
	// BaseURL is the API's address. Default https://www.alphavantage.co.
	BaseURL string
	// APIKey is the account's key. Required.
	APIKey string
	// Symbols are the symbols to serve; others never reach the upstream.
	// Required: the upstream's symbol list is too large to ask about.
	Symbols []string
	// Interval is how often to refresh a symbol. Default 1 min: the free
	// tier's quotes do not change faster.
	Interval time.Duration
	// Client defaults to one with a 10 s timeout.
	Client *http.Client
}

// AlphaVantage fetches quotes from Alpha Vantage's GLOBAL_QUOTE endpoint,
// one of the most widely used free stock APIs. It understands the answers
// the API gives when it will not serve: HTTP 429, and HTTP 200 with a
// "Note" or "Information" body about call frequency or daily limits, or an
// "Error Message" body.
type AlphaVantage struct {
	cfg     AlphaVantageConfig
	symbols map[string]bool
}

var _ Source = (*AlphaVantage)(nil)

// maxResponseBytes bounds an upstream answer; a quote is under 1 KB.
const maxResponseBytes = 64 << 10

// NewAlphaVantage returns an Alpha Vantage source.
func NewAlphaVantage(cfg AlphaVantageConfig) (*AlphaVantage, error) {
	if cfg.APIKey == "" || len(cfg.Symbols) == 0 {
		return nil, errors.New("alpha vantage: an API key and a symbol list are required")
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = "https://www.alphavantage.co"
	}
	if cfg.Interval == 0 {
		cfg.Interval = time.Minute
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	a := &AlphaVantage{cfg: cfg, symbols: make(map[string]bool)}
	for _, s := range cfg.Symbols {
		if !ValidSymbol(s) {
			return nil, fmt.Errorf("alpha vantage: invalid symbol %q", s)
		}
		a.symbols[s] = true
	}
	return a, nil
}

// Name implements Source.
func (a *AlphaVantage) Name() string { return "alphavantage" }

// Has implements Source.
func (a *AlphaVantage) Has(symbol string) bool { return a.symbols[symbol] }

// Interval implements Source.
func (a *AlphaVantage) Interval() time.Duration { return a.cfg.Interval }

// Fetch implements Source.
func (a *AlphaVantage) Fetch(ctx context.Context, symbol string) (Quote, error) {
	if !a.Has(symbol) {
		return Quote{}, ErrUnknownSymbol
	}
	u := a.cfg.BaseURL + "/query?" + url.Values{"function": {"GLOBAL_QUOTE"}, "symbol": {symbol}, "apikey": {a.cfg.APIKey}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Quote{}, fmt.Errorf("alpha vantage: %w", err)
	}
	resp, err := a.cfg.Client.Do(req)
	if err != nil {
		return Quote{}, fmt.Errorf("alpha vantage: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return Quote{}, fmt.Errorf("alpha vantage: read: %w", err)
	}
	if resp.StatusCode == http.StatusTooManyRequests {
		retry, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
		return Quote{}, &RateLimitError{RetryAfter: time.Duration(retry) * time.Second, Message: "HTTP 429"}
	}
	if resp.StatusCode != http.StatusOK {
		return Quote{}, fmt.Errorf("alpha vantage: HTTP %d", resp.StatusCode)
	}
	q, err := decodeGlobalQuote(body, time.Now())
	if err != nil {
		return Quote{}, fmt.Errorf("alpha vantage %s: %w", symbol, err)
	}
	if q.Symbol != symbol {
		return Quote{}, fmt.Errorf("alpha vantage: asked for %s, got %s", symbol, q.Symbol)
	}
	return q, nil
}

// globalQuote is the GLOBAL_QUOTE answer: every value a string.
type globalQuote struct {
	Quote       map[string]string `json:"Global Quote"`
	Note        string            `json:"Note"`
	Information string            `json:"Information"`
	Error       string            `json:"Error Message"`
}

// decodeGlobalQuote decodes a GLOBAL_QUOTE body. The API gives no time of
// day, only the latest trading day, so the quote is as of fetched.
func decodeGlobalQuote(body []byte, fetched time.Time) (Quote, error) {
	var g globalQuote
	if err := json.Unmarshal(body, &g); err != nil {
		return Quote{}, fmt.Errorf("decode: %w", err)
	}
	switch {
	case g.Note != "":
		return Quote{}, &RateLimitError{Message: g.Note}
	case g.Information != "":
		// The free tier's daily limit and premium notices come this way.
		return Quote{}, &RateLimitError{Message: g.Information}
	case g.Error != "":
		return Quote{}, fmt.Errorf("upstream error: %s", g.Error)
	case g.Quote == nil:
		return Quote{}, errors.New(`no "Global Quote" in the answer`)
	case len(g.Quote) == 0:
		// What the API answers for a symbol it does not know.
		return Quote{}, ErrUnknownSymbol
	}
	num := func(key string) (float64, error) {
		s := strings.TrimSuffix(g.Quote[key], "%")
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return 0, fmt.Errorf("field %q: %q is not a number", key, g.Quote[key])
		}
		return v, nil
	}
	var q Quote
	var errs []error
	get := func(key string, p *float64) {
		v, err := num(key)
		errs = append(errs, err)
		*p = v
	}
	get("02. open", &q.Open)
	get("03. high", &q.High)
	get("04. low", &q.Low)
	get("05. price", &q.Price)
	get("08. previous close", &q.PrevClose)
	get("09. change", &q.Change)
	get("10. change percent", &q.ChangePercent)
	var volume float64
	get("06. volume", &volume)
	if err := errors.Join(errs...); err != nil {
		return Quote{}, err
	}
	q.Symbol = g.Quote["01. symbol"]
	if !ValidSymbol(q.Symbol) {
		return Quote{}, fmt.Errorf("field \"01. symbol\": %q is not a symbol", q.Symbol)
	}
	if q.Price <= 0 || volume < 0 {
		return Quote{}, fmt.Errorf("price %v or volume %v out of range", q.Price, volume)
	}
	q.Volume = int64(volume)
	q.Time = fetched.UnixMilli()
	q.Source = "alphavantage"
	return q, nil
}
