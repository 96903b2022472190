package store

import "testing"

// TestKeysAreStable pins every key layout: data stored under them must be
// found after an upgrade.
func TestKeysAreStable(t *testing.T) {
	for _, k := range []struct{ got, want string }{
		{statusKey("ingest", "n1"), "ingest.n1"},
		{sliceLeaseKey(1, 3), "aggregator-slice.1of3"},
		{viewKey("shop", "heat"), "shop.heat"},
		{quotesViewKey, "quotes"},
		{snapshotSeqKey(0, 1), "seq"},
		{snapshotSeqKey(2, 4), "seq.2of4"},
		{siteSnapshotName("shop"), "site.shop"},
		{quotesSnapshotName, "quotes"},
		{QuoteKey("BRK.B"), "q.BRK_B"},
		{LeaseKey("IBM"), "lease.IBM"},
		{BudgetKey("alphavantage"), "budget.alphavantage"},
		{tokenKey("abc"), "token.abc"},
		{secretKey("overlay"), "secret.overlay"},
	} {
		if k.got != k.want {
			t.Errorf("key %q, want %q", k.got, k.want)
		}
	}
	if sym := SymbolOfQuoteKey(QuoteKey("BRK.B")); sym != "BRK.B" {
		t.Errorf("SymbolOfQuoteKey = %q", sym)
	}
	if id, ok := ingestOfStatusKey("ingest.n1"); !ok || id != "n1" {
		t.Errorf("ingestOfStatusKey = %q, %v", id, ok)
	}
	if _, ok := ingestOfStatusKey("aggregator-slice.0of1"); ok {
		t.Error("a lease taken for an ingest node's status")
	}
}
