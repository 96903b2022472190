package natsutil

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pulse-analytics/pulse/event"
)

// SiteRegistry holds the site registry in memory and follows its changes
// in the sites bucket, so every node sees an edit within moments and looks
// sites up without a round trip.
type SiteRegistry struct {
	watcher jetstream.KeyWatcher
	done    chan struct{}

	mu    sync.RWMutex
	sites map[string]event.Site
}

// WatchSites loads the registry and follows it until Stop.
func WatchSites(ctx context.Context, js jetstream.JetStream, logger *slog.Logger) (*SiteRegistry, error) {
	kv, err := js.KeyValue(ctx, BucketSites)
	if err != nil {
		return nil, fmt.Errorf("site registry: %w", err)
	}
	// The watcher outlives ctx, which only bounds the initial load.
	w, err := kv.WatchAll(context.Background())
	if err != nil {
		return nil, fmt.Errorf("site registry: watch: %w", err)
	}
	r := &SiteRegistry{watcher: w, done: make(chan struct{}), sites: make(map[string]event.Site)}
	// The watcher sends the current values, then nil, then changes.
	for loaded := false; !loaded; {
		select {
		case e := <-w.Updates():
			if e == nil {
				loaded = true
				break
			}
			r.apply(e, logger)
		case <-ctx.Done():
			_ = w.Stop()
			return nil, fmt.Errorf("site registry: initial load: %w", ctx.Err())
		}
	}
	go func() {
		defer close(r.done)
		for e := range w.Updates() {
			if e != nil {
				r.apply(e, logger)
			}
		}
	}()
	return r, nil
}

func (r *SiteRegistry) apply(e jetstream.KeyValueEntry, logger *slog.Logger) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e.Operation() != jetstream.KeyValuePut {
		delete(r.sites, e.Key())
		return
	}
	var s event.Site
	if err := json.Unmarshal(e.Value(), &s); err != nil || s.Key != e.Key() {
		logger.Warn("ignoring a malformed site in the registry", "key", e.Key(), "err", err)
		return
	}
	r.sites[s.Key] = s
}

// Site returns the site with key.
func (r *SiteRegistry) Site(key string) (event.Site, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	s, ok := r.sites[key]
	return s, ok
}

// Keys returns the keys of every site, sorted.
func (r *SiteRegistry) Keys() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Sorted(maps.Keys(r.sites))
}

// Stop stops following changes.
func (r *SiteRegistry) Stop() {
	_ = r.watcher.Stop()
	<-r.done
}

// PutSite validates s and stores it in the registry.
func PutSite(ctx context.Context, kv jetstream.KeyValue, s event.Site) error {
	if err := s.Validate(); err != nil {
		return err
	}
	data, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, s.Key, data); err != nil {
		return fmt.Errorf("store site %s: %w", s.Key, err)
	}
	return nil
}

// SeedSites stores sites in the registry. A site from a config file is the
// declared truth and overwrites the registry's copy; the built-in default
// (overwrite false) only fills a gap, so dashboard edits to it survive.
func SeedSites(ctx context.Context, js jetstream.JetStream, sites []event.Site, overwrite bool) error {
	kv, err := js.KeyValue(ctx, BucketSites)
	if err != nil {
		return fmt.Errorf("site registry: %w", err)
	}
	for _, s := range sites {
		if overwrite {
			if err := PutSite(ctx, kv, s); err != nil {
				return err
			}
			continue
		}
		if err := s.Validate(); err != nil {
			return err
		}
		data, _ := json.Marshal(s)
		if _, err := kv.Create(ctx, s.Key, data); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("seed site %s: %w", s.Key, err)
		}
	}
	return nil
}

// LoadSitesFile reads a JSON array of sites:
//
//	[{"key": "shop", "name": "Shop", "origins": ["https://shop.example"]}]
func LoadSitesFile(path string) ([]event.Site, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sites file: %w", err)
	}
	var sites []event.Site
	if err := json.Unmarshal(data, &sites); err != nil {
		return nil, fmt.Errorf("sites file %s: %w", path, err)
	}
	for i := range sites {
		if err := sites[i].Validate(); err != nil {
			return nil, fmt.Errorf("sites file %s, site %d: %w", path, i+1, err)
		}
	}
	return sites, nil
}
