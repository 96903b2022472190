package event

import "testing"

func TestCallInBuckets(t *testing.T) {
	for _, tt := range []struct {
		seconds float64
		bucket  int
		figure  string
	}{
		{0.25, 0, "callin_le_1s"},
		{1, 0, "callin_le_1s"},
		{1.001, 1, "callin_le_2s"},
		{300, 6, "callin_le_300s"},
		{301, 7, "callin_gt_300s"},
	} {
		if b := CallInBucket(tt.seconds); b != tt.bucket || CallInFigure(b) != tt.figure {
			t.Errorf("%v s: bucket %d (%s), want %d (%s)", tt.seconds, b, CallInFigure(b), tt.bucket, tt.figure)
		}
	}
}

func TestQuoteStaleAtTime(t *testing.T) {
	for _, tt := range []struct {
		staleAt, now int64
		want         bool
	}{
		{staleAt: 1000, now: 999, want: false},
		{staleAt: 1000, now: 1000, want: false},
		{staleAt: 1000, now: 1001, want: true},
		{staleAt: 0, now: 1 << 50, want: false}, // stored before StaleAt existed
	} {
		q := Quote{StaleAt: tt.staleAt}
		if got := q.StaleAtTime(tt.now); got != tt.want {
			t.Errorf("StaleAt %d at %d: stale %v, want %v", tt.staleAt, tt.now, got, tt.want)
		}
	}
}
