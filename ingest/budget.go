package ingest

// budget is a connection's event rate limit, a token bucket of its
// rate, full at the start. A connection's mutex guards it, so it needs no
// lock of its own, and it takes the time the poller read the frames
// instead of reading the clock again. x/time/rate's Limiter (its own
// mutex, time.Time arithmetic, a clock read) and the clock reads this
// saves were over a quarter of what a classic frame cost conn.Data
// (BenchmarkConnClassic). The rate is not kept in the budget: every
// connection of a node has the same, and an idle connection should hold
// no more than it needs.
type budget struct {
	tokens float64
	last   int64 // Unix ns of the last refill
}

// rate is a budget's limit: perSecond events a second, up to burst at
// once.
type rate struct{ perSecond, burst float64 }

func newRate(perSecond, burst int) rate {
	return rate{perSecond: float64(perSecond), burst: float64(burst)}
}

func newBudget(r rate) budget { return budget{tokens: r.burst} }

// allow takes n events at now (Unix ns) if the budget, limited by r, has
// them. A clock that steps back refills nothing.
func (b *budget) allow(r rate, now int64, n int) bool {
	if b.last == 0 {
		b.last = now
	}
	if elapsed := now - b.last; elapsed > 0 {
		b.tokens = min(r.burst, b.tokens+float64(elapsed)*r.perSecond/1e9)
		b.last = now
	}
	if float64(n) > b.tokens {
		return false
	}
	b.tokens -= float64(n)
	return true
}
