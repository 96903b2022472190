package ingest

import (
	"math"
	"sync"
	"time"

	"github.com/pulse-analytics/pulse/event"
)

// The load signal of a node is the events it accepted in the last interval
// as a share of its Capacity. Above highLoad the node raises its level, and
// each level doubles the intervals trackers sample moves and flush batches
// at, so the same visitors send about half as much; below lowLoad it lowers
// the level again. The gap between the two keeps the level from flapping.
const (
	highLoad = 0.8
	lowLoad  = 0.4
	// maxLevel bounds the slow-down at 16×: moves every 800 ms and a batch
	// every 16 s still show where visitors are.
	maxLevel = 4
)

// loadLevel returns the next load level given the measured load and the
// current level.
func loadLevel(load float64, level int) int {
	switch {
	case load > highLoad && level < maxLevel:
		return level + 1
	case load < lowLoad && level > 0:
		return level - 1
	default:
		return level
	}
}

// ratesAt returns the tracker rates at a load level.
func ratesAt(cfg Config, level int) rates {
	f := 1 << level
	return rates{
		SampleMs: int(cfg.SampleInterval/time.Millisecond) * f,
		FlushMs:  int(cfg.FlushInterval/time.Millisecond) * f,
		MaxBatch: cfg.MaxBatchEvents,
	}
}

// loadWatch measures a node's load every interval and sets its level.
type loadWatch struct {
	interval time.Duration
	capacity int // events a second
	// take returns the events accepted since it was last called.
	take func() int64
	// measured is told each measure: the events a second accepted in
	// the interval, as a share of capacity, and the level that follows.
	measured func(perSecond, load float64, level int)
	// changed is told when the level changes.
	changed func(level int)
}

// run measures until stop is closed.
func (w loadWatch) run(stop <-chan struct{}) {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	level := 0
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		perSecond := float64(w.take()) / w.interval.Seconds()
		load := perSecond / float64(w.capacity)
		next := loadLevel(load, level)
		w.measured(perSecond, load, next)
		if next != level {
			level = next
			w.changed(level)
		}
	}
}

// watchLoad measures the node's load every LoadInterval and, when the
// level changes, sends every tracker its new rates.
func (s *Server) watchLoad() {
	defer close(s.loadDone)
	loadWatch{
		interval: s.cfg.LoadInterval,
		capacity: s.cfg.Capacity,
		take: func() int64 {
			s.callIns.roll()
			return s.accepted.Swap(0)
		},
		measured: func(perSecond, load float64, _ int) {
			s.perSecond.Store(math.Float64bits(perSecond))
			s.metrics.load.Set(load)
		},
		changed: s.tellRates,
	}.run(s.stopLoad)
}

// tellRates sets the node's load level and sends every tracker the rates
// that go with it.
func (s *Server) tellRates(level int) {
	s.level.Store(int32(level))
	s.metrics.level.Set(float64(level))
	s.log.Info("load level changed; telling trackers", "level", level)
	msg := rateMsg{Type: "rate", rates: s.rates()}
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		if c.proto.batches {
			conns = append(conns, c)
		}
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.do(func() { c.write(msg) })
	}
}

// Conns is the number of tracker connections the node holds.
func (s *Server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Figures are the node's numbers for its status report: besides its
// load, what it tells clients now (trackers' sampling and flush
// intervals, sample_ms and flush_ms) and the callIns it gave quote
// widgets in its last load interval, per second (see callIns.figures).
func (s *Server) Figures() map[string]float64 {
	r := s.rates()
	f := map[string]float64{
		"connections":       float64(s.Conns()),
		"events_per_second": math.Float64frombits(s.perSecond.Load()),
		"load_level":        float64(s.level.Load()),
		"sample_ms":         float64(r.SampleMs),
		"flush_ms":          float64(r.FlushMs),
	}
	s.callIns.figures(f, s.cfg.LoadInterval)
	return f
}

// callIns counts the callIns given to quote widgets in the current load
// interval by event.CallInBuckets, and stopped those told to stop (an
// unknown symbol); last and lastStop are the interval before.
type callIns struct {
	mu                sync.Mutex
	cur, last         []int64
	curStop, lastStop int64
}

// add counts one answer: its callIn, nil for "stop".
func (c *callIns) add(callIn *time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if callIn == nil {
		c.curStop++
		return
	}
	if c.cur == nil {
		c.cur = make([]int64, len(event.CallInBuckets)+1)
	}
	c.cur[event.CallInBucket(callIn.Seconds())]++
}

// roll ends the interval.
func (c *callIns) roll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last, c.cur = c.cur, nil
	c.lastStop, c.curStop = c.curStop, 0
}

// figures adds the last interval's distribution to f, per second, named by
// event.CallInFigure, and callin_stop.
func (c *callIns) figures(f map[string]float64, interval time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	per := interval.Seconds()
	for i := range len(event.CallInBuckets) + 1 {
		var n int64
		if c.last != nil {
			n = c.last[i]
		}
		f[event.CallInFigure(i)] = float64(n) / per
	}
	f["callin_stop"] = float64(c.lastStop) / per
}
