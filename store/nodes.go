package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// NodeStatus is what a running part reports about itself every
// StatusInterval, for the dashboard's System page and for others to see
// it is alive.
type NodeStatus struct {
	// Kind is "ingest", "aggregator" or "dashboard".
	Kind string `json:"kind"`
	ID   string `json:"id"`
	// Started and Updated are Unix ms.
	Started int64 `json:"started"`
	Updated int64 `json:"updated"`
	// Figures are the part's own numbers, by name.
	Figures map[string]float64 `json:"figures"`
}

// Nodes is the bucket of the running parts' statuses and the aggregator
// slices' leases. Its entries expire when they are not refreshed.
type Nodes struct{ kv jetstream.KeyValue }

// Report stores the status of a part now and every StatusInterval until
// ctx ends, with the figures fn returns.
func (n *Nodes) Report(ctx context.Context, kind, id string, fn func() map[string]float64, logger *slog.Logger) {
	st := NodeStatus{Kind: kind, ID: id, Started: time.Now().UnixMilli()}
	t := time.NewTicker(StatusInterval)
	defer t.Stop()
	for {
		st.Updated, st.Figures = time.Now().UnixMilli(), fn()
		if err := n.Put(ctx, st); err != nil && ctx.Err() == nil {
			logger.Debug("status not reported", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Put stores one status report.
func (n *Nodes) Put(ctx context.Context, st NodeStatus) error {
	return putJSON(ctx, n.kv, statusKey(st.Kind, st.ID), st)
}

// Statuses returns every part's latest status, by kind and id.
func (n *Nodes) Statuses(ctx context.Context) ([]NodeStatus, error) {
	var out []NodeStatus
	err := each(ctx, n.kv, func(key string, value []byte) {
		var st NodeStatus
		if json.Unmarshal(value, &st) == nil && st.Kind != "" {
			out = append(out, st)
		}
	})
	slices.SortFunc(out, func(a, b NodeStatus) int { return strings.Compare(a.Kind+a.ID, b.Kind+b.ID) })
	return out, err
}

// IngestNodes returns the ids of the ingest nodes that have a status: those
// that reported within the bucket's TTL.
func (n *Nodes) IngestNodes(ctx context.Context) (map[string]bool, error) {
	keys, err := n.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", n.kv.Bucket(), err)
	}
	live := make(map[string]bool)
	for k := range keys.Keys() {
		if id, ok := ingestOfStatusKey(k); ok {
			live[id] = true
		}
	}
	return live, nil
}

// WatchIngest calls apply with every ingest node's status as it is now and
// as it changes, from a goroutine of its own, until stop; a node whose
// status was deleted or expired comes with gone set. A watch may see an
// expiry late or not at all, so a reader judges freshness by Updated.
func (n *Nodes) WatchIngest(ctx context.Context, apply func(id string, st NodeStatus, gone bool)) (stop func() error, err error) {
	// The watch outlives ctx, which may only bound the start.
	w, err := n.kv.Watch(context.WithoutCancel(ctx), ingestStatusKeys)
	if err != nil {
		return nil, fmt.Errorf("watch ingest nodes: %w", err)
	}
	go func() {
		for e := range w.Updates() {
			if e == nil {
				continue // the initial values are in
			}
			id, _ := ingestOfStatusKey(e.Key())
			var st NodeStatus
			switch {
			case e.Operation() != jetstream.KeyValuePut:
				apply(id, st, true)
			case json.Unmarshal(e.Value(), &st) == nil:
				apply(id, st, false)
			}
		}
	}()
	return w.Stop, nil
}

// ErrLeaseHeld is the answer to taking a lease another owner holds.
var ErrLeaseHeld = errors.New("lease held by another owner")

// SliceLease is an aggregator slice's ownership: the owner holds a key in
// the nodes bucket, which expires when not refreshed, so a slice is never
// aggregated twice and a dead owner is replaced when its lease expires.
type SliceLease struct {
	kv         jetstream.KeyValue
	key, owner string
	rev        uint64
}

// TakeSliceLease takes the lease of slice of slices for owner, or finds
// owner already holds it (from an earlier run). ErrLeaseHeld means another
// owner has it.
func (n *Nodes) TakeSliceLease(ctx context.Context, slice, slices int, owner string) (*SliceLease, error) {
	l := &SliceLease{kv: n.kv, key: sliceLeaseKey(slice, slices), owner: owner}
	rev, err := n.kv.Create(ctx, l.key, []byte(owner))
	if err == nil {
		l.rev = rev
		return l, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return nil, fmt.Errorf("slice lease %s: %w", l.key, err)
	}
	if e, err := n.kv.Get(ctx, l.key); err == nil && string(e.Value()) == owner {
		l.rev = e.Revision()
		return l, nil
	}
	return nil, fmt.Errorf("slice lease %s: %w", l.key, ErrLeaseHeld)
}

// Name is the lease's key, for logs.
func (l *SliceLease) Name() string { return l.key }

// Refresh renews the lease; an error means it was lost.
func (l *SliceLease) Refresh(ctx context.Context) error {
	rev, err := l.kv.Update(ctx, l.key, []byte(l.owner), l.rev)
	if err != nil {
		return fmt.Errorf("slice lease %s lost: %w", l.key, err)
	}
	l.rev = rev
	return nil
}

// Release gives the lease up, for a standby to take over at once. It goes
// by the lease's current revision while the lease is still the owner's: a
// refresh cut short by a shutdown may have been stored without its new
// revision reaching l.
func (l *SliceLease) Release(ctx context.Context) error {
	e, err := l.kv.Get(ctx, l.key)
	if err != nil || string(e.Value()) != l.owner {
		return nil
	}
	return storeErr("release "+l.key, l.kv.Delete(ctx, l.key, jetstream.LastRevision(e.Revision())))
}
