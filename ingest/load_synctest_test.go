package ingest

import (
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// TestLoadLevelsMeetTheirGoals runs the node's load watch on
// testing/synctest's clock against trackers that keep the rates they are
// told: at level L each sends 1/2^L of the moves it would at level 0.
// Demand changes by phases; the goals are the assertions: after a surge
// the load is under the high mark within maxLevel+1 intervals, and the
// level then holds while the demand does (no flapping); demand beyond what
// the levels can absorb holds the level at maxLevel; after the surge the
// level is back at 0 within maxLevel+1 intervals.
func TestLoadLevelsMeetTheirGoals(t *testing.T) {
	const (
		interval = time.Second
		capacity = 10_000 // events a second
		phase    = 30     // intervals
	)
	phases := []struct {
		name      string
		demand    float64 // events a second at level 0
		wantLevel int     // where the level settles
	}{
		{"calm", 2_000, 0},
		{"at capacity", 10_000, 1},
		{"a surge of three times capacity", 30_000, 2},
		{"beyond what the levels absorb", 1_000_000, maxLevel},
		{"calm again", 3_000, 0},
		{"between the marks", 6_000, 0},
	}
	synctest.Test(t, func(t *testing.T) {
		var (
			accepted atomic.Int64
			level    atomic.Int32
			demand   atomic.Uint64 // events a second at level 0, as an integer
		)
		type measure struct {
			load  float64
			level int
		}
		measures := make(chan measure, 1)
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			loadWatch{
				interval: interval,
				capacity: capacity,
				take:     func() int64 { return accepted.Swap(0) },
				measured: func(_, load float64, next int) { measures <- measure{load, next} },
				changed:  func(l int) { level.Store(int32(l)) },
			}.run(stop)
		}()
		// The trackers: every 10 ms, what they send at the level they
		// were last told.
		go func() {
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				perTick := float64(demand.Load()) / 100 / float64(int(1)<<level.Load())
				accepted.Add(int64(perTick))
			}
		}()
		for _, ph := range phases {
			demand.Store(uint64(ph.demand))
			settled := -1
			for i := range phase {
				m := <-measures
				if settled < 0 && m.level == ph.wantLevel && (m.load <= highLoad || m.level == maxLevel) {
					settled = i
					if i > maxLevel {
						t.Errorf("%s: settled at level %d after %d intervals, want within %d", ph.name, m.level, i+1, maxLevel+1)
					}
				}
				if settled >= 0 && i > settled && m.level != ph.wantLevel {
					t.Errorf("%s: level %d at interval %d, after it had settled at %d (load %.2f)", ph.name, m.level, i+1, ph.wantLevel, m.load)
				}
			}
			if settled < 0 {
				t.Errorf("%s: the level never settled at %d", ph.name, ph.wantLevel)
			}
		}
		close(stop)
		go func() {
			for range measures {
			}
		}()
		<-done
		close(measures)
	})
}
