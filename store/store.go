// Package store owns what Pulse keeps in NATS key-value buckets and object
// stores: the stored types, the bucket names, the keys (keys.go) and the
// encodings. Other packages reach stored data only through the typed
// stores here, which cmd opens once with Open and hands to the parts that
// need them; streams and subjects are package event's and natsutil's.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pulse-analytics/pulse/natsutil"
)

// Buckets. Their names are what is on disk: renaming one loses its data.
const (
	// bucketState holds the stream sequence the aggregator's snapshots
	// cover, one index per slice.
	bucketState = "pulse_state"
	// bucketSnapshots (an object store) holds the aggregator's state per
	// site; objects, unlike KV values, have no size limit.
	bucketSnapshots = "pulse_snapshots"
	// bucketSites is the site registry: key, name, allowed origins.
	bucketSites = "pulse_sites"
	// bucketNodes holds each running part's latest status and the
	// aggregator slices' leases; entries expire when not refreshed.
	bucketNodes = "pulse_nodes"
	// bucketQuotes holds the latest quote per symbol, fetch leases and the
	// upstream budget, shared by every ingest node's poller.
	bucketQuotes = "pulse_quotes"
	// bucketViews holds the latest panel of every site, for dashboards to
	// render on first load.
	bucketViews = "pulse_views"
	// bucketUsers holds dashboard accounts, API tokens and the
	// dashboards' shared secrets.
	bucketUsers = "pulse_users"
	// bucketSessions holds dashboard login sessions.
	bucketSessions = "pulse_sessions"
)

const (
	// SessionTTL is how long a dashboard login lasts.
	SessionTTL = 12 * time.Hour
	// StatusInterval is how often parts report their status; nodeTTL
	// forgets a part after three missed reports.
	StatusInterval = 5 * time.Second
	nodeTTL        = 3 * StatusInterval
)

// Errors of every store: ErrNotFound for a key with no value (never
// stored, deleted or expired), ErrExists for a create of a key that has
// one, ErrMalformed for a stored value that does not decode.
var (
	ErrNotFound  = errors.New("not found")
	ErrExists    = errors.New("already exists")
	ErrMalformed = errors.New("malformed stored value")
)

// Stores are every store, opened on one JetStream context.
type Stores struct {
	Sites     *Sites
	Views     *Views
	Nodes     *Nodes
	Snapshots *Snapshots
	Accounts  *Accounts
	Sessions  *Sessions
	// Quotes is the quotes poller's bucket; its keys are QuoteKey,
	// LeaseKey and BudgetKey.
	Quotes jetstream.KeyValue
}

// Open opens every store. The buckets must exist (see Ensure).
func Open(ctx context.Context, js jetstream.JetStream) (*Stores, error) {
	kvs := make(map[string]jetstream.KeyValue)
	for _, name := range []string{bucketState, bucketSites, bucketNodes, bucketQuotes, bucketViews, bucketUsers, bucketSessions} {
		kv, err := js.KeyValue(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("open bucket %s: %w", name, err)
		}
		kvs[name] = kv
	}
	objects, err := js.ObjectStore(ctx, bucketSnapshots)
	if err != nil {
		return nil, fmt.Errorf("open object store %s: %w", bucketSnapshots, err)
	}
	return &Stores{
		Sites:     &Sites{kv: kvs[bucketSites]},
		Views:     &Views{kv: kvs[bucketViews]},
		Nodes:     &Nodes{kv: kvs[bucketNodes]},
		Snapshots: &Snapshots{index: kvs[bucketState], objects: objects},
		Accounts:  &Accounts{kv: kvs[bucketUsers]},
		Sessions:  &Sessions{kv: kvs[bucketSessions]},
		Quotes:    kvs[bucketQuotes],
	}, nil
}

// Ensure creates the buckets that are missing. It changes none that
// exist: a change of limits is an operator's decision. replicas is asked
// only if something is missing.
func Ensure(ctx context.Context, js jetstream.JetStream, replicas natsutil.Replicas, logger *slog.Logger) error {
	buckets := []jetstream.KeyValueConfig{
		{Bucket: bucketState, Description: "aggregator snapshots", History: 1},
		{Bucket: bucketViews, Description: "latest dashboard panels", History: 1},
		{Bucket: bucketUsers, Description: "dashboard accounts", History: 1},
		{Bucket: bucketSessions, Description: "dashboard sessions", History: 1, TTL: SessionTTL},
		{Bucket: bucketSites, Description: "site registry", History: 5},
		{Bucket: bucketQuotes, Description: "quotes, fetch leases, upstream budget", History: 1},
		{Bucket: bucketNodes, Description: "running parts", History: 1, TTL: nodeTTL},
	}
	for _, b := range buckets {
		b.Storage = jetstream.FileStorage
		err := natsutil.Retry(ctx, logger, "bucket "+b.Bucket, func(ctx context.Context) error {
			// Declare only what is missing: every part calls Ensure at
			// start, and identical creates racing on a new cluster time out.
			if _, err := js.KeyValue(ctx, b.Bucket); !errors.Is(err, jetstream.ErrBucketNotFound) {
				return err
			}
			n, err := replicas(ctx)
			if err != nil {
				return err
			}
			b.Replicas = n
			_, err = js.CreateKeyValue(ctx, b)
			if errors.Is(err, jetstream.ErrBucketExists) || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				return nil
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("ensure bucket %s: %w", b.Bucket, err)
		}
	}
	// A session stored at login is read on the very next request, maybe
	// by another dashboard replica. A direct get may be answered by a
	// replica that has not applied the write yet (the cluster test saw a
	// fresh login bounce back to the login page), so these buckets are
	// read from their stream's leader.
	for _, name := range []string{bucketUsers, bucketSessions} {
		err := natsutil.Retry(ctx, logger, "leader reads of "+name, func(ctx context.Context) error {
			st, err := js.Stream(ctx, "KV_"+name)
			if err != nil {
				return err
			}
			cfg := st.CachedInfo().Config
			if !cfg.AllowDirect {
				return nil
			}
			cfg.AllowDirect = false
			_, err = js.UpdateStream(ctx, cfg)
			return err
		})
		if err != nil {
			return fmt.Errorf("ensure leader reads of %s: %w", name, err)
		}
	}
	err := natsutil.Retry(ctx, logger, "object store "+bucketSnapshots, func(ctx context.Context) error {
		if _, err := js.ObjectStore(ctx, bucketSnapshots); !errors.Is(err, jetstream.ErrBucketNotFound) {
			return err
		}
		n, err := replicas(ctx)
		if err != nil {
			return err
		}
		_, err = js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket:      bucketSnapshots,
			Description: "aggregator snapshots",
			Storage:     jetstream.FileStorage,
			Replicas:    n,
		})
		if errors.Is(err, jetstream.ErrBucketExists) || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("ensure object store %s: %w", bucketSnapshots, err)
	}
	return nil
}

// storeErr gives err the store's meaning: ErrNotFound or ErrExists where
// JetStream's error says so, with what was asked for as context.
func storeErr(what string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted), errors.Is(err, jetstream.ErrObjectNotFound):
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	case errors.Is(err, jetstream.ErrKeyExists):
		return fmt.Errorf("%s: %w", what, ErrExists)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// get returns key's value.
func get(ctx context.Context, kv jetstream.KeyValue, key string) ([]byte, error) {
	e, err := kv.Get(ctx, key)
	if err != nil {
		return nil, storeErr("load "+key, err)
	}
	return e.Value(), nil
}

// getJSON decodes key's value into v.
func getJSON(ctx context.Context, kv jetstream.KeyValue, key string, v any) error {
	data, err := get(ctx, kv, key)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode %s: %w: %v", key, ErrMalformed, err)
	}
	return nil
}

// putJSON stores v encoded under key.
func putJSON(ctx context.Context, kv jetstream.KeyValue, key string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	_, err = kv.Put(ctx, key, data)
	return storeErr("store "+key, err)
}

// each calls fn for every entry of kv, once per key.
func each(ctx context.Context, kv jetstream.KeyValue, fn func(key string, value []byte)) error {
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("list %s: %w", kv.Bucket(), err)
	}
	seen := make(map[string]bool)
	for k := range keys.Keys() {
		if seen[k] {
			continue // a key written during listing may be listed twice
		}
		seen[k] = true
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // deleted or expired meanwhile
		}
		if err != nil {
			return fmt.Errorf("load %s: %w", k, err)
		}
		fn(k, e.Value())
	}
	return nil
}
