package ingest

// budget is a connection's event rate limit, a token bucket: perSecond
// events a second, up to burst at once, full at the start. A connection's
// mutex guards it, so it needs no lock of its own, and it takes the time
// the poller read the frames instead of reading the clock again.
// x/time/rate's Limiter (its own mutex, time.Time arithmetic, a clock
// read) and the clock reads this saves were over a quarter of what a
// classic frame cost conn.Data (BenchmarkConnClassic).
type budget struct {
	perSecond, burst float64
	tokens           float64
	last             int64 // Unix ns of the last refill
}

func newBudget(perSecond, burst int) budget {
	return budget{perSecond: float64(perSecond), burst: float64(burst), tokens: float64(burst)}
}

// allow takes n events at now (Unix ns) if the budget has them. A clock
// that steps back refills nothing.
func (b *budget) allow(now int64, n int) bool {
	if b.last == 0 {
		b.last = now
	}
	if elapsed := now - b.last; elapsed > 0 {
		b.tokens = min(b.burst, b.tokens+float64(elapsed)*b.perSecond/1e9)
		b.last = now
	}
	if float64(n) > b.tokens {
		return false
	}
	b.tokens -= float64(n)
	return true
}
