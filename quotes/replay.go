package quotes

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"time"
)

// ReplayConfig configures a Replay source.
type ReplayConfig struct {
	// Step is how long each row of a symbol's history stands before the
	// next one: the replay speed. Default 5 s.
	Step time.Duration
	// Start is when row 0 stood; the history loops. Default: the Unix
	// epoch, so every node of a cluster replays in step.
	Start time.Time
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Replay replays real historical prices from a CSV file with the columns
// symbol, date, price (the format of stocks.csv in the npm package
// vega-datasets), one row per symbol and period, at a configurable speed.
type Replay struct {
	cfg  ReplayConfig
	rows map[string][]replayRow
}

type replayRow struct {
	date  string
	price float64
}

var _ Source = (*Replay)(nil)

// OpenReplay reads a CSV file into a Replay source.
func OpenReplay(path string, cfg ReplayConfig) (*Replay, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	defer f.Close()
	return NewReplay(f, cfg)
}

// NewReplay reads CSV rows from r into a Replay source.
func NewReplay(r io.Reader, cfg ReplayConfig) (*Replay, error) {
	if cfg.Step == 0 {
		cfg.Step = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Start.IsZero() {
		cfg.Start = time.Unix(0, 0)
	}
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = 3
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("replay: header: %w", err)
	}
	if !slices.Equal(header, []string{"symbol", "date", "price"}) {
		return nil, fmt.Errorf("replay: header %q, want symbol,date,price", header)
	}
	rp := &Replay{cfg: cfg, rows: make(map[string][]replayRow)}
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("replay: %w", err)
		}
		price, err := strconv.ParseFloat(rec[2], 64)
		if err != nil || price <= 0 {
			return nil, fmt.Errorf("replay: line %d: bad price %q", line, rec[2])
		}
		if !ValidSymbol(rec[0]) {
			return nil, fmt.Errorf("replay: line %d: bad symbol %q", line, rec[0])
		}
		rp.rows[rec[0]] = append(rp.rows[rec[0]], replayRow{date: rec[1], price: price})
	}
	if len(rp.rows) == 0 {
		return nil, errors.New("replay: no rows")
	}
	return rp, nil
}

// Name implements Source.
func (r *Replay) Name() string { return "replay" }

// Has implements Source.
func (r *Replay) Has(symbol string) bool { _, ok := r.rows[symbol]; return ok }

// Interval implements Source.
func (r *Replay) Interval() time.Duration { return r.cfg.Step }

// Symbols lists the symbols in the file.
func (r *Replay) Symbols() []string {
	out := make([]string, 0, len(r.rows))
	for s := range r.rows {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// Fetch implements Source. The quote's previous close and open are the
// prior row's price; high and low span the two; the file has no volume.
func (r *Replay) Fetch(ctx context.Context, symbol string) (Quote, error) {
	if err := ctx.Err(); err != nil {
		return Quote{}, err
	}
	rows, ok := r.rows[symbol]
	if !ok {
		return Quote{}, ErrUnknownSymbol
	}
	n := int64(r.cfg.Now().Sub(r.cfg.Start) / r.cfg.Step)
	i := int(n % int64(len(rows)))
	cur, prev := rows[i], rows[(i+len(rows)-1)%len(rows)]
	q := Quote{
		Symbol: symbol, Price: cur.price, Open: prev.price, PrevClose: prev.price,
		High: max(cur.price, prev.price), Low: min(cur.price, prev.price),
		Time:   r.cfg.Start.Add(time.Duration(n) * r.cfg.Step).UnixMilli(),
		Source: "replay " + cur.date,
	}
	return withChange(q), nil
}
