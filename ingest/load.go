package ingest

import (
	"math"
	"time"
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

// watchLoad measures the load every LoadInterval and, when the level
// changes, sends every tracker its new rates.
func (s *Server) watchLoad() {
	defer close(s.loadDone)
	t := time.NewTicker(s.cfg.LoadInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stopLoad:
			return
		case <-t.C:
		}
		perSecond := float64(s.accepted.Swap(0)) / s.cfg.LoadInterval.Seconds()
		s.perSecond.Store(math.Float64bits(perSecond))
		load := perSecond / float64(s.cfg.Capacity)
		s.metrics.load.Set(load)
		old := int(s.level.Load())
		next := loadLevel(load, old)
		if next == old {
			continue
		}
		s.level.Store(int32(next))
		s.metrics.level.Set(float64(next))
		s.log.Info("load level changed; telling trackers", "load", load, "level", next)
		msg := rateMsg{Type: "rate", rates: s.rates()}
		s.mu.Lock()
		conns := make([]*conn, 0, len(s.conns))
		for c := range s.conns {
			if c.protocol {
				conns = append(conns, c)
			}
		}
		s.mu.Unlock()
		for _, c := range conns {
			c.do(func() { c.write(msg) })
		}
	}
}

// Figures are the node's numbers for its status report.
func (s *Server) Figures() map[string]float64 {
	s.mu.Lock()
	conns := len(s.conns)
	s.mu.Unlock()
	return map[string]float64{
		"connections":       float64(conns),
		"events_per_second": math.Float64frombits(s.perSecond.Load()),
		"load_level":        float64(s.level.Load()),
	}
}
