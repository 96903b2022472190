package natsutil_test

import (
	"context"
	"testing"

	"github.com/pulse-analytics/pulse/natsutil"
	"github.com/pulse-analytics/pulse/natsutil/natstest"
)

// TestEnsureReadsAccountsFromTheLeader: the accounts and sessions buckets
// are read from their stream's leader, so a login is seen by the next
// request; other buckets keep direct reads.
func TestEnsureReadsAccountsFromTheLeader(t *testing.T) {
	ns := natstest.Run(t) // runs Ensure
	ctx := context.Background()
	for bucket, direct := range map[string]bool{
		natsutil.BucketUsers:    false,
		natsutil.BucketSessions: false,
		natsutil.BucketViews:    true,
	} {
		st, err := ns.JS.Stream(ctx, "KV_"+bucket)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.CachedInfo().Config.AllowDirect; got != direct {
			t.Errorf("%s: AllowDirect %v, want %v", bucket, got, direct)
		}
	}
}
