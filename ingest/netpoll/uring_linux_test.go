//go:build linux && (amd64 || arm64)

package netpoll

import (
	"testing"
	"time"
)

func TestRoundWait(t *testing.T) {
	const round = 50 * time.Millisecond
	onGrid := time.UnixMilli(1_700_000_000_000) // a multiple of 50 ms
	tests := []struct {
		name   string
		now    time.Time
		reaped int
		since  time.Duration
		want   time.Duration
	}{
		{"after an idle wait: until the grid", onGrid.Add(20 * time.Millisecond), 0, 0, 30 * time.Millisecond},
		{"few completions: until the grid", onGrid.Add(10 * time.Millisecond), 25, round, 40 * time.Millisecond},
		// 192 buffers (three quarters) fill in 19.2 ms at 500 per 50 ms.
		{"a fast rate: until the buffers are three quarters full", onGrid, 500, round, 19200 * time.Microsecond},
		{"faster still", onGrid.Add(time.Millisecond), 192_000, time.Second, time.Millisecond},
		{"the grid comes first", onGrid.Add(45 * time.Millisecond), 500, round, 5 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := roundWait(tt.now, round, tt.reaped, tt.since); got != tt.want {
			t.Errorf("%s: roundWait = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestRoundAtMostMaxRound(t *testing.T) {
	tests := []struct {
		round, want time.Duration
	}{
		{0, 10 * time.Millisecond},
		{50 * time.Millisecond, 50 * time.Millisecond},
		{time.Hour, MaxRound}, // sends and closes would wait an hour
	}
	for _, tt := range tests {
		p, err := New(Options{Mode: IOURing, Loops: 1, Round: tt.round})
		if err != nil {
			t.Fatal(err)
		}
		if p.Mode() != IOURing {
			p.Close()
			t.Skip("io_uring not available here")
		}
		if got := p.loops[0].(*uringLoop).round; got != tt.want {
			t.Errorf("Round %v: loop rounds every %v, want %v", tt.round, got, tt.want)
		}
		p.Close()
	}
}
