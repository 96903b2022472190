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
