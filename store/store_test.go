package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pulse-analytics/pulse/natsutil/natstest"
	"github.com/pulse-analytics/pulse/store"
)

// TestEnsureReadsAccountsFromTheLeader: the accounts and sessions buckets
// are read from their stream's leader, so a login is seen by the next
// request; other buckets keep direct reads.
func TestEnsureReadsAccountsFromTheLeader(t *testing.T) {
	ns := natstest.Run(t) // runs Ensure
	ctx := context.Background()
	for bucket, direct := range map[string]bool{
		"pulse_users":    false,
		"pulse_sessions": false,
		"pulse_views":    true,
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

// TestStoresRoundTrip: what each store puts, it gets back; what was never
// put is ErrNotFound; a create of what exists is ErrExists.
func TestStoresRoundTrip(t *testing.T) {
	st := natstest.Run(t).Stores
	ctx := context.Background()

	acc := store.Account{User: "ann", Hash: []byte("h"), Sites: []string{"shop"}, ID: "id1", Epoch: "e1"}
	if err := st.Accounts.Create(ctx, acc); err != nil {
		t.Fatal(err)
	}
	if err := st.Accounts.Create(ctx, acc); !errors.Is(err, store.ErrExists) {
		t.Errorf("second create: %v, want ErrExists", err)
	}
	if got, err := st.Accounts.Account(ctx, "ann"); err != nil || got.ID != "id1" || got.Sites[0] != "shop" {
		t.Errorf("account = %+v, %v", got, err)
	}
	if _, err := st.Accounts.Account(ctx, "bob"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("missing account: %v, want ErrNotFound", err)
	}
	if err := st.Accounts.PutToken(ctx, "abc", store.APIToken{Name: "ci", User: "ann", Account: "id1"}); err != nil {
		t.Fatal(err)
	}
	if tok, err := st.Accounts.Token(ctx, "abc"); err != nil || tok.User != "ann" || tok.ID != "abc" {
		t.Errorf("token = %+v, %v", tok, err)
	}
	secret, err := st.Accounts.Secret(ctx, "overlay", []byte("first"))
	if err != nil || string(secret) != "first" {
		t.Fatalf("secret = %q, %v", secret, err)
	}
	if secret, _ := st.Accounts.Secret(ctx, "overlay", []byte("second")); string(secret) != "first" {
		t.Errorf("a second dashboard got secret %q, want the first's", secret)
	}
	// Tokens and secrets share the bucket with accounts but are not
	// accounts.
	if accs, err := st.Accounts.List(ctx); err != nil || len(accs) != 1 {
		t.Errorf("accounts = %+v, %v; want ann only", accs, err)
	}
	if toks, err := st.Accounts.Tokens(ctx, "ann"); err != nil || len(toks) != 1 || toks[0].ID != "abc" {
		t.Errorf("tokens = %+v, %v", toks, err)
	}
	if err := st.Accounts.DeleteToken(ctx, "abc"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Accounts.Token(ctx, "abc"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("revoked token: %v, want ErrNotFound", err)
	}

	if err := st.Sessions.Put(ctx, "h1", store.Session{User: "ann", Epoch: "e1"}); err != nil {
		t.Fatal(err)
	}
	if s, err := st.Sessions.Get(ctx, "h1"); err != nil || s.User != "ann" {
		t.Errorf("session = %+v, %v", s, err)
	}
	if err := st.Sessions.Delete(ctx, "h1"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Sessions.Get(ctx, "h1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ended session: %v, want ErrNotFound", err)
	}

	if _, err := st.Views.Panel(ctx, "shop", "overview"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("missing view: %v, want ErrNotFound", err)
	}
	if err := st.Views.PutPanel(ctx, "shop", "overview", []byte(`{"site":"shop"}`)); err != nil {
		t.Fatal(err)
	}
	if data, err := st.Views.Panel(ctx, "shop", "overview"); err != nil || string(data) != `{"site":"shop"}` {
		t.Errorf("view = %s, %v", data, err)
	}

	if _, err := st.Snapshots.Index(ctx, 0, 1); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("index before the first snapshot: %v, want ErrNotFound", err)
	}
	if _, err := st.Snapshots.Quotes(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("quotes snapshot before the first: %v, want ErrNotFound", err)
	}
	if err := st.Snapshots.PutSite(ctx, "shop", []byte("state")); err != nil {
		t.Fatal(err)
	}
	if err := st.Snapshots.PutIndex(ctx, 1, 2, store.SnapshotIndex{Seq: 42, Sites: []string{"shop"}}); err != nil {
		t.Fatal(err)
	}
	if idx, err := st.Snapshots.Index(ctx, 1, 2); err != nil || idx.Seq != 42 {
		t.Errorf("index = %+v, %v", idx, err)
	}
	if _, err := st.Snapshots.Index(ctx, 0, 2); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("another slice's index: %v, want ErrNotFound", err)
	}
	if data, err := st.Snapshots.Site(ctx, "shop"); err != nil || string(data) != "state" {
		t.Errorf("site snapshot = %q, %v", data, err)
	}
}

// TestMalformedValueIsNotAbsent: a stored value that does not decode is
// ErrMalformed, not ErrNotFound, so a reader can tell damage from absence.
func TestMalformedValueIsNotAbsent(t *testing.T) {
	ns := natstest.Run(t)
	ctx := context.Background()
	users, _ := ns.JS.KeyValue(ctx, "pulse_users")
	if _, err := users.Put(ctx, "ann", []byte("{")); err != nil {
		t.Fatal(err)
	}
	_, err := ns.Stores.Accounts.Account(ctx, "ann")
	if !errors.Is(err, store.ErrMalformed) || errors.Is(err, store.ErrNotFound) {
		t.Errorf("malformed account: %v, want ErrMalformed", err)
	}
}

// TestSliceLease: one owner at a time; the owner finds its own lease
// again after a restart; a released lease is free at once.
func TestSliceLease(t *testing.T) {
	nodes := natstest.Run(t).Stores.Nodes
	ctx := context.Background()
	a, err := nodes.TakeSliceLease(ctx, 0, 2, "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nodes.TakeSliceLease(ctx, 0, 2, "b"); !errors.Is(err, store.ErrLeaseHeld) {
		t.Errorf("b took a's lease: %v, want ErrLeaseHeld", err)
	}
	if _, err := nodes.TakeSliceLease(ctx, 1, 2, "b"); err != nil {
		t.Errorf("b could not take the other slice: %v", err)
	}
	again, err := nodes.TakeSliceLease(ctx, 0, 2, "a")
	if err != nil {
		t.Fatalf("a could not find its own lease: %v", err)
	}
	if err := again.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Refresh(ctx); err == nil {
		t.Error("a refresh from a stale revision succeeded")
	}
	if err := again.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := nodes.TakeSliceLease(ctx, 0, 2, "b"); err != nil {
		t.Errorf("b could not take a released lease: %v", err)
	}
}

// TestNodeStatuses: reports are listed by kind and id, and the ingest
// nodes among them are found and watched.
func TestNodeStatuses(t *testing.T) {
	nodes := natstest.Run(t).Stores.Nodes
	ctx := context.Background()
	seen := make(chan string, 10)
	stop, err := nodes.WatchIngest(ctx, func(id string, st store.NodeStatus, gone bool) {
		seen <- fmt.Sprintf("%s %v %v", id, st.Figures["connections"], gone)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stop() }()
	for _, st := range []store.NodeStatus{
		{Kind: "ingest", ID: "n2", Figures: map[string]float64{"connections": 3}},
		{Kind: "aggregator", ID: "a1"},
		{Kind: "ingest", ID: "n1", Figures: map[string]float64{"connections": 5}},
	} {
		if err := nodes.Put(ctx, st); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := nodes.TakeSliceLease(ctx, 0, 1, "a1"); err != nil {
		t.Fatal(err)
	}
	all, err := nodes.Statuses(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, st := range all {
		names = append(names, st.Kind+"."+st.ID)
	}
	if got := strings.Join(names, " "); got != "aggregator.a1 ingest.n1 ingest.n2" {
		t.Errorf("statuses %s; the lease is not a status", got)
	}
	if live, err := nodes.IngestNodes(ctx); err != nil || len(live) != 2 || !live["n1"] || !live["n2"] {
		t.Errorf("ingest nodes = %v, %v", live, err)
	}
	want := map[string]bool{"n2 3 false": true, "n1 5 false": true}
	for range want {
		select {
		case s := <-seen:
			if !want[s] {
				t.Errorf("watch saw %q", s)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("watch saw too little")
		}
	}
}
