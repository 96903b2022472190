package quotes

import "time"

// Situation is what the server knows when it answers a poll, and so what
// decides when the widget should call in next.
type Situation struct {
	Now time.Time
	// NextFresh is when the next fresh quote is expected to be in every
	// node's cache: the next fetch plus its usual latency.
	NextFresh time.Time
	// Interval is the upstream's refresh interval.
	Interval time.Duration
	// MarketOpen is false outside trading hours; NextOpen is then when
	// trading starts again.
	MarketOpen bool
	NextOpen   time.Time
	// Errors counts the upstream's consecutive failures for the symbol.
	Errors int
	// LoadLevel is the node's load level; each level doubles the wait.
	LoadLevel int
	// Jitter is a random number in [0, 1), so that widgets spread out.
	Jitter float64
}

// Bounds of the callIn policy.
const (
	// pollMargin is how long after fresh data is expected a poll should
	// arrive: enough for the cache to have it on every node.
	pollMargin = 100 * time.Millisecond
	// maxJitter bounds the spread added after pollMargin; a tenth of the
	// interval spreads widgets without making the data much staler.
	maxJitter = 2 * time.Second
	// maxErrorBackoff caps the wait after upstream errors.
	maxErrorBackoff = 5 * time.Minute
	// maxClosedWait caps the wait while the market is closed, so a widget
	// left open overnight still checks in now and then (a changed
	// schedule, a holiday that was not one).
	maxClosedWait = 15 * time.Minute
	// minCallIn keeps a widget from hammering a node.
	minCallIn = 250 * time.Millisecond
)

// StaleAfter is how old a quote of a source fetched every interval may be
// before it counts as stale: the interval, then the margin and the most
// spread the callIn policy gives widgets after fresh data is due. A
// widget polling as told never holds a quote older than that while
// fetches keep up.
func StaleAfter(interval time.Duration) time.Duration {
	return interval + pollMargin + min(interval/10, maxJitter)
}

// CallIn decides how long a widget waits before its next poll: just after
// the next fresh data exists, spread by jitter; longer while the market is
// closed, after upstream errors (exponential, capped), and under load.
func CallIn(s Situation) time.Duration {
	spread := min(s.Interval/10, maxJitter)
	var d time.Duration
	switch {
	case !s.MarketOpen:
		d = min(s.NextOpen.Sub(s.Now), maxClosedWait) + pollMargin
		spread = min(d/10, time.Minute)
	case s.Errors > 0:
		// Exponential, capped, and never before the poller tries again.
		d = min(s.Interval<<min(s.Errors, 16), maxErrorBackoff)
		d = max(d, s.NextFresh.Sub(s.Now)+pollMargin)
		spread = d / 10
	default:
		d = s.NextFresh.Sub(s.Now) + pollMargin
		if d < pollMargin {
			// The fresh data is late: look again soon, not at once.
			d = max(s.Interval/10, pollMargin)
		}
	}
	d += time.Duration(s.Jitter * float64(spread))
	d <<= min(max(s.LoadLevel, 0), 4)
	return max(d, minCallIn)
}
