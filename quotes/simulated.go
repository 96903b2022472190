package quotes

import (
	"context"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"sync"
	"time"
)

// DefaultUniverse is the simulated source's symbols and their starting
// prices, roughly where these stocks have traded.
var DefaultUniverse = map[string]float64{
	"AAPL": 190, "MSFT": 410, "GOOG": 170, "AMZN": 180, "META": 480,
	"NVDA": 120, "TSLA": 240, "IBM": 185, "ORCL": 140, "INTC": 30,
	"NFLX": 650, "ADBE": 520, "CRM": 270, "AMD": 160, "JPM": 200,
	"V": 280, "KO": 62, "PEP": 170, "DIS": 100, "BRK.B": 410,
}

// SimulatedConfig configures a Simulated source. Zero fields take the
// stated defaults.
type SimulatedConfig struct {
	// Seed makes the prices: the same seed gives the same prices at the
	// same times.
	Seed uint64
	// Interval is how often prices move. Default 5 s.
	Interval time.Duration
	// Symbols and their starting prices. Default DefaultUniverse.
	Symbols map[string]float64
	// Volatility and Drift are annualised, as in the Black–Scholes model.
	// Defaults 0.3 and 0.05.
	Volatility, Drift float64
	// Market is when prices move; outside it the last price stands.
	// Default: always open.
	Market Market
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Simulated makes quotes by geometric Brownian motion: each step multiplies
// the price by exp((μ−σ²/2)Δt + σ√Δt·Z). Daily closes follow a daily random
// walk from the starting price, and each day's path runs from a small gap
// off the previous close to the next close, so open, high, low, previous
// close and volume all behave like a real quote's, and all of it is a pure
// function of the seed, the symbol and the time.
type Simulated struct {
	cfg SimulatedConfig

	mu    sync.Mutex
	paths map[string]*dayPath
}

var _ Source = (*Simulated)(nil)

// epoch is day 0 of the daily walk.
var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// tradingDays is the number of trading days in a year: a session, however
// long, carries one of them, so its variance is one day's.
const tradingDays = 252

// NewSimulated returns a simulated source.
func NewSimulated(cfg SimulatedConfig) *Simulated {
	if cfg.Interval == 0 {
		cfg.Interval = 5 * time.Second
	}
	if cfg.Symbols == nil {
		cfg.Symbols = DefaultUniverse
	}
	if cfg.Volatility == 0 {
		cfg.Volatility = 0.3
	}
	if cfg.Drift == 0 {
		cfg.Drift = 0.05
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Simulated{cfg: cfg, paths: make(map[string]*dayPath)}
}

// Name implements Source.
func (s *Simulated) Name() string { return "simulated" }

// Has implements Source.
func (s *Simulated) Has(symbol string) bool { _, ok := s.cfg.Symbols[symbol]; return ok }

// Interval implements Source.
func (s *Simulated) Interval() time.Duration { return s.cfg.Interval }

// Fetch implements Source.
func (s *Simulated) Fetch(ctx context.Context, symbol string) (Quote, error) {
	if err := ctx.Err(); err != nil {
		return Quote{}, err
	}
	if !s.Has(symbol) {
		return Quote{}, ErrUnknownSymbol
	}
	return s.QuoteAt(symbol, s.cfg.Now()), nil
}

// QuoteAt returns the quote of a known symbol at t.
func (s *Simulated) QuoteAt(symbol string, t time.Time) Quote {
	start, steps := s.session(t)
	day := int(start.Sub(epoch).Hours() / 24)
	if day < 0 {
		day = 0
	}
	n := int(t.Sub(start) / s.cfg.Interval)
	n = min(max(n, 0), steps-1)

	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.paths[symbol]
	if p == nil || p.day != day || p.step > n {
		p = s.newDay(symbol, day)
		s.paths[symbol] = p
	}
	for p.step < n {
		p.next()
	}
	q := Quote{
		Symbol: symbol, Price: round(p.price, 2), Open: round(p.open, 2),
		High: round(p.high, 2), Low: round(p.low, 2), PrevClose: round(p.prevClose, 2),
		Volume: p.volume, Time: start.Add(time.Duration(n) * s.cfg.Interval).UnixMilli(), Source: s.Name(),
	}
	return withChange(q)
}

// session returns the start of the trading session t falls in (or the last
// one, when the market is closed) and its number of steps.
func (s *Simulated) session(t time.Time) (time.Time, int) {
	m := s.cfg.Market
	if m.Location == nil {
		day := t.UTC().Truncate(24 * time.Hour)
		return day, int(24 * time.Hour / s.cfg.Interval)
	}
	steps := int((m.Close - m.Open) / s.cfg.Interval)
	local := t.In(m.Location)
	for back := 0; back < 8; back++ {
		d := midnight(local.AddDate(0, 0, -back))
		open := d.Add(m.Open)
		if wd := d.Weekday(); wd != time.Saturday && wd != time.Sunday && !open.After(local) {
			return open, steps
		}
	}
	return midnight(local).Add(m.Open), steps
}

// dayPath is a symbol's price path through one trading day.
type dayPath struct {
	day                    int
	rng                    *rand.Rand // volumes
	prices                 []float64  // every step's price
	baseVolume             float64    // per step
	step                   int
	open, prevClose, price float64
	high, low              float64
	volume                 int64
}

func (s *Simulated) rng(symbol string, day int, stream uint64) *rand.Rand {
	h := fnv.New64a()
	_, _ = h.Write([]byte(symbol))
	return rand.New(rand.NewPCG(s.cfg.Seed^h.Sum64(), uint64(day)<<8|stream))
}

// level is the closing level of the day before day: a daily random walk
// from the starting price, with a day's worth of volatility per day.
func (s *Simulated) level(symbol string, day int) float64 {
	r := s.rng(symbol, 0, 1)
	dailyVol := s.cfg.Volatility / math.Sqrt(tradingDays)
	logP := math.Log(s.cfg.Symbols[symbol])
	for range day {
		logP += (s.cfg.Drift/tradingDays - dailyVol*dailyVol/2) + dailyVol*r.NormFloat64()
	}
	return math.Exp(logP)
}

// newDay makes the day's path: it opens a small gap away from the previous
// close, moves by geometric Brownian motion, and is bridged to close at the
// next day's level, so that closes, opens and previous closes agree day to
// day without simulating every day before.
func (s *Simulated) newDay(symbol string, day int) *dayPath {
	_, steps := s.session(epoch.Add(time.Duration(day) * 24 * time.Hour))
	r := s.rng(symbol, day, 2)
	prevClose, closeAt := s.level(symbol, day), s.level(symbol, day+1)
	// Overnight gaps are a fraction of a day's move.
	open := prevClose * math.Exp(0.2*s.cfg.Volatility/math.Sqrt(tradingDays)*r.NormFloat64())
	dt := 1 / float64(steps*tradingDays)
	drift := (s.cfg.Drift - s.cfg.Volatility*s.cfg.Volatility/2) * dt
	vol := s.cfg.Volatility * math.Sqrt(dt)
	logs := make([]float64, steps)
	logs[0] = math.Log(open)
	for i := 1; i < steps; i++ {
		logs[i] = logs[i-1] + drift + vol*r.NormFloat64()
	}
	// Bridge: bend the walk linearly so that it ends at the close.
	miss := math.Log(closeAt) - logs[steps-1]
	prices := make([]float64, steps)
	for i := range logs {
		prices[i] = math.Exp(logs[i] + miss*float64(i)/float64(max(steps-1, 1)))
	}
	p := &dayPath{
		day: day, rng: s.rng(symbol, day, 3), prices: prices,
		// About 5 million shares a day.
		baseVolume: 5e6 / float64(steps),
		open:       prices[0], prevClose: prevClose, price: prices[0], high: prices[0], low: prices[0],
	}
	p.volume = p.stepVolume()
	return p
}

func (p *dayPath) next() {
	p.step++
	p.price = p.prices[p.step]
	p.high = max(p.high, p.price)
	p.low = min(p.low, p.price)
	p.volume += p.stepVolume()
}

func (p *dayPath) stepVolume() int64 {
	return int64(p.baseVolume * math.Exp(0.5*p.rng.NormFloat64()))
}
