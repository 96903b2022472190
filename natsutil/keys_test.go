package natsutil

import "testing"

// TestKeysAreStable pins every key layout: data stored under them must be
// found after an upgrade.
func TestKeysAreStable(t *testing.T) {
	for _, k := range []struct{ got, want string }{
		{StatusKey("ingest", "n1"), "ingest.n1"},
		{SliceLeaseKey(1, 3), "aggregator-slice.1of3"},
		{ViewKey("shop", "heat"), "shop.heat"},
		{QuotesViewKey, "quotes"},
		{SnapshotSeqKey(0, 1), "seq"},
		{SnapshotSeqKey(2, 4), "seq.2of4"},
		{SiteSnapshotName("shop"), "site.shop"},
		{QuotesSnapshotName, "quotes"},
		{QuoteKey("BRK.B"), "q.BRK_B"},
		{LeaseKey("IBM"), "lease.IBM"},
		{BudgetKey("alphavantage"), "budget.alphavantage"},
		{TokenKey("abc"), "token.abc"},
		{SecretKey("overlay"), "secret.overlay"},
	} {
		if k.got != k.want {
			t.Errorf("key %q, want %q", k.got, k.want)
		}
	}
	if sym := SymbolOfQuoteKey(QuoteKey("BRK.B")); sym != "BRK.B" {
		t.Errorf("SymbolOfQuoteKey = %q", sym)
	}
	if id, ok := IngestOfStatusKey("ingest.n1"); !ok || id != "n1" {
		t.Errorf("IngestOfStatusKey = %q, %v", id, ok)
	}
	if _, ok := IngestOfStatusKey("aggregator-slice.0of1"); ok {
		t.Error("a lease taken for an ingest node's status")
	}
}
