package aggregator

import (
	"testing"
	"time"

	"github.com/pulse-analytics/pulse/event"
	"github.com/pulse-analytics/pulse/natsutil/natstest"
)

// TestLivePacer: a move after a quiet spell runs a round at once; moves
// within every of the last round arm one round at the earliest time
// allowed, and moves while it is armed add none.
func TestLivePacer(t *testing.T) {
	const every = 100 * time.Millisecond
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	type step struct {
		ms       int
		due      bool // the armed round's time came (else: a move)
		runNow   bool
		waitMs   int
		armedNow bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"first move runs at once", []step{{ms: 0, runNow: true}}},
		{"a move within every waits for it", []step{
			{ms: 0, runNow: true},
			{ms: 30, waitMs: 70, armedNow: true},
			{ms: 60, armedNow: true}, // already armed: no second timer
			{ms: 100, due: true},
			{ms: 250, runNow: true}, // quiet again for longer than every
		}},
		{"steady moves make one round every", []step{
			{ms: 0, runNow: true},
			{ms: 50, waitMs: 50, armedNow: true},
			{ms: 100, due: true},
			{ms: 150, waitMs: 50, armedNow: true},
			{ms: 200, due: true},
			{ms: 200, waitMs: 100, armedNow: true}, // a move in the round's instant waits a whole every
		}},
		{"a late round counts from when it ran", []step{
			{ms: 0, runNow: true},
			{ms: 10, waitMs: 90, armedNow: true},
			{ms: 180, due: true}, // the loop was busy
			{ms: 230, waitMs: 50, armedNow: true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := livePacer{every: every}
			for _, s := range tt.steps {
				if s.due {
					p.due(at(s.ms))
					if p.armed {
						t.Fatalf("at %d ms: still armed after its round", s.ms)
					}
					continue
				}
				runNow, wait := p.moved(at(s.ms))
				if runNow != s.runNow || wait != time.Duration(s.waitMs)*time.Millisecond || p.armed != s.armedNow {
					t.Fatalf("move at %d ms: run now %v, wait %v, armed %v; want %v, %d ms, %v",
						s.ms, runNow, wait, p.armed, s.runNow, s.waitMs, s.armedNow)
				}
			}
		})
	}
}

// TestLivePanelGoesOutAtOnce: with a live interval of an hour, the first
// move still goes out as a live panel at once (a ticker would hold it for
// the hour), and the next move within the hour waits.
func TestLivePanelGoesOutAtOnce(t *testing.T) {
	ns := natstest.Run(t)
	panels := panelsOf[event.LivePanel](t, ns, event.PanelLive)
	runAggregator(t, ns, func(c *Config) { c.Tick, c.LiveEvery = time.Hour, time.Hour })
	publishBatches(t, ns.JS, "demo", 1, 3)
	select {
	case lp := <-panels:
		if lp.Site != "demo" || lp.Events == 0 {
			t.Fatalf("live panel %+v", lp)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no live panel for the first move")
	}
	publishBatches(t, ns.JS, "demo", 1, 2)
	select {
	case lp := <-panels:
		t.Errorf("a second live panel within LiveEvery: %+v", lp)
	case <-time.After(300 * time.Millisecond):
	}
}
