package netpoll

import (
	"testing"
	"time"
)

func TestUntilRound(t *testing.T) {
	const round = 50 * time.Millisecond
	at := func(ms int64) time.Time { return time.UnixMilli(1_700_000_000_000 + ms) } // a multiple of 50 ms
	tests := []struct {
		now    time.Time
		offset time.Duration
		want   time.Duration
	}{
		{at(0), 0, round}, // on a round: the next one
		{at(1), 0, 49 * time.Millisecond},
		{at(49), 0, time.Millisecond},
		{at(0), 5 * time.Millisecond, 5 * time.Millisecond},
		{at(3), 5 * time.Millisecond, 2 * time.Millisecond},
		{at(5), 5 * time.Millisecond, round}, // on the instant: the next one
		{at(6), 5 * time.Millisecond, 49 * time.Millisecond},
		{at(-1), 0, time.Millisecond}, // before the epoch's multiple
		{time.Unix(0, 0).Add(-time.Millisecond), 0, time.Millisecond},
	}
	for _, tt := range tests {
		if got := UntilRound(tt.now, round, tt.offset); got != tt.want {
			t.Errorf("UntilRound(%v, %v, %v) = %v, want %v", tt.now.UnixMilli(), round, tt.offset, got, tt.want)
		}
	}
}
