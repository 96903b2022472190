package store

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Snapshots keep the aggregator's state: an index per slice of the
// partitions (the stream sequence its snapshots cover, and which sites
// have one) in the state bucket, and each site's and the quotes state's
// snapshot in the object store, which has no size limit. The snapshots'
// own encoding, with its version, is the aggregator's (its
// testdata/snapshot-v1.golden pins it).
type Snapshots struct {
	index   jetstream.KeyValue
	objects jetstream.ObjectStore
}

// SnapshotIndex is what a slice's snapshot covers: every site snapshot it
// names holds the events up to Seq of the activity stream.
type SnapshotIndex struct {
	Seq   uint64   `json:"seq"`
	Sites []string `json:"sites"`
}

// Index returns the index of slice of slices, or ErrNotFound before the
// first snapshot.
func (s *Snapshots) Index(ctx context.Context, slice, slices int) (SnapshotIndex, error) {
	var idx SnapshotIndex
	err := getJSON(ctx, s.index, snapshotSeqKey(slice, slices), &idx)
	return idx, err
}

// PutIndex stores the index of slice of slices; write it after the site
// snapshots it names.
func (s *Snapshots) PutIndex(ctx context.Context, slice, slices int, idx SnapshotIndex) error {
	return putJSON(ctx, s.index, snapshotSeqKey(slice, slices), idx)
}

// Site returns the snapshot of site, or ErrNotFound.
func (s *Snapshots) Site(ctx context.Context, site string) ([]byte, error) {
	return s.get(ctx, siteSnapshotName(site))
}

// PutSite stores the snapshot of site.
func (s *Snapshots) PutSite(ctx context.Context, site string, data []byte) error {
	return s.put(ctx, siteSnapshotName(site), data)
}

// Quotes returns the quotes state's snapshot, or ErrNotFound.
func (s *Snapshots) Quotes(ctx context.Context) ([]byte, error) {
	return s.get(ctx, quotesSnapshotName)
}

// PutQuotes stores the quotes state's snapshot.
func (s *Snapshots) PutQuotes(ctx context.Context, data []byte) error {
	return s.put(ctx, quotesSnapshotName, data)
}

func (s *Snapshots) get(ctx context.Context, name string) ([]byte, error) {
	data, err := s.objects.GetBytes(ctx, name)
	return data, storeErr("load snapshot "+name, err)
}

func (s *Snapshots) put(ctx context.Context, name string, data []byte) error {
	if _, err := s.objects.PutBytes(ctx, name, data); err != nil {
		return fmt.Errorf("store snapshot %s: %w", name, err)
	}
	return nil
}
