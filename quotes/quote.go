// Package quotes is the stock-quote domain of Pulse: the Quote, symbols,
// the Source interface with its adapters (simulated, CSV replay, an HTTP
// provider), market hours, the poller that fetches each symbol once per
// upstream interval for the whole cluster, and the callIn policy that tells
// widgets when to poll next.
package quotes

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/pulse-analytics/pulse/event"
)

// Quote is one quote of one symbol; the wire type lives in event, as
// dashboards and the aggregator read it too.
type Quote = event.Quote

// withChange fills Change and ChangePercent from Price and PrevClose.
func withChange(q Quote) Quote {
	q.Change = round(q.Price-q.PrevClose, 4)
	if q.PrevClose != 0 {
		q.ChangePercent = round(q.Change/q.PrevClose*100, 4)
	}
	return q
}

var symbolPattern = regexp.MustCompile(`^[A-Z][A-Z0-9]{0,5}([.-][A-Z0-9]{1,3})?$`)

// ValidSymbol reports whether s looks like a ticker symbol: 1 to 6 capital
// letters or digits, starting with a letter, with an optional class or
// exchange suffix (BRK.B, RDS-A). At most 10 characters.
func ValidSymbol(s string) bool { return symbolPattern.MatchString(s) }

// Errors a Source returns.
var (
	// ErrUnknownSymbol: the source has no such symbol.
	ErrUnknownSymbol = errors.New("unknown symbol")
)

// RateLimitError is an upstream's refusal to answer because its rate limit
// is reached.
type RateLimitError struct {
	// RetryAfter is how long the upstream asks to wait; 0 if it did not say.
	RetryAfter time.Duration
	Message    string
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("upstream rate limit: %s", e.Message)
}

// Source fetches quotes from one upstream.
type Source interface {
	// Name names the source in quotes and metrics.
	Name() string
	// Has reports whether the source serves symbol. It never calls the
	// upstream, so bogus symbols never reach it.
	Has(symbol string) bool
	// Interval is how often the upstream has fresh data for a symbol.
	Interval() time.Duration
	// Fetch returns the latest quote of symbol. It is safe for concurrent
	// use. It returns ErrUnknownSymbol for a symbol the upstream does not
	// know, a *RateLimitError when the upstream refuses for its rate
	// limit, and another error for any other failure.
	Fetch(ctx context.Context, symbol string) (Quote, error)
}

func round(v float64, places int) float64 {
	p := 1.0
	for range places {
		p *= 10
	}
	if v < 0 {
		return -float64(int64(-v*p+0.5)) / p
	}
	return float64(int64(v*p+0.5)) / p
}
