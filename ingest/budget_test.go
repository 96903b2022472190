package ingest

import (
	"testing"
	"time"
)

func TestBudget(t *testing.T) {
	const start = int64(1_763_790_000) * int64(time.Second)
	type take struct {
		at   time.Duration // after start
		n    int
		want bool
	}
	for _, tc := range []struct {
		name             string
		perSecond, burst int
		takes            []take
	}{
		{"full at the start", 10, 100, []take{{0, 100, true}, {0, 1, false}}},
		{"more than the burst never", 10, 100, []take{{0, 101, false}, {time.Hour, 101, false}, {time.Hour, 100, true}}},
		{"refills at the rate", 10, 100, []take{{0, 100, true}, {500 * time.Millisecond, 6, false}, {500 * time.Millisecond, 5, true}, {time.Second, 5, true}, {time.Second, 1, false}}},
		{"refills up to the burst", 10, 20, []take{{0, 20, true}, {time.Minute, 21, false}, {time.Minute, 20, true}}},
		{"a refused take costs nothing", 10, 100, []take{{0, 90, true}, {0, 11, false}, {0, 10, true}}},
		{"a clock stepping back refills nothing", 10, 100, []take{{time.Second, 100, true}, {0, 1, false}, {time.Second, 1, false}, {1100 * time.Millisecond, 1, true}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRate(tc.perSecond, tc.burst)
			b := newBudget(r)
			for i, tk := range tc.takes {
				if got := b.allow(r, start+int64(tk.at), tk.n); got != tk.want {
					t.Fatalf("take %d (%d at %v): %v, want %v", i, tk.n, tk.at, got, tk.want)
				}
			}
		})
	}
}
