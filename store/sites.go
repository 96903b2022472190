package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pulse-analytics/pulse/event"
)

// Site is a tracked site as the site registry (KV) holds it.
type Site struct {
	Key  string `json:"key"`
	Name string `json:"name"`
	// Origins are the browser origins (scheme://host[:port]) allowed to
	// send events for the site; "*" allows any. A page served by the
	// ingest node itself is always allowed.
	Origins []string `json:"origins"`
	// RespectDNT makes the snippet honour Do-Not-Track and Global Privacy
	// Control.
	RespectDNT bool `json:"respectDNT,omitempty"`
}

// AllowsOrigin reports whether a browser on origin may send events for s.
func (s *Site) AllowsOrigin(origin string) bool {
	for _, o := range s.Origins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	return false
}

// Validate checks a site's fields.
func (s *Site) Validate() error {
	if !event.ValidSite(s.Key) {
		return fmt.Errorf("site key %q: use 1 to 63 of a-z, 0-9, '-' and '_', starting with a letter or digit", s.Key)
	}
	if len(s.Name) > 100 {
		return errors.New("site name longer than 100 characters")
	}
	if len(s.Origins) > 50 {
		return errors.New("more than 50 origins")
	}
	for _, o := range s.Origins {
		if o == "*" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" {
			return fmt.Errorf("origin %q: want scheme://host[:port], like https://shop.example", o)
		}
	}
	return nil
}

// SiteRegistry holds the site registry in memory and follows its changes
// in the sites bucket, so every node sees an edit within moments and looks
// sites up without a round trip.
type SiteRegistry struct {
	watcher jetstream.KeyWatcher
	done    chan struct{}

	mu    sync.RWMutex
	sites map[string]Site
}

// Sites is the site registry's bucket.
type Sites struct{ kv jetstream.KeyValue }

// Watch loads the registry and follows it until Stop.
func (st *Sites) Watch(ctx context.Context, logger *slog.Logger) (*SiteRegistry, error) {
	// The watcher outlives ctx, which only bounds the initial load.
	w, err := st.kv.WatchAll(context.Background())
	if err != nil {
		return nil, fmt.Errorf("site registry: watch: %w", err)
	}
	r := &SiteRegistry{watcher: w, done: make(chan struct{}), sites: make(map[string]Site)}
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
	var s Site
	if err := json.Unmarshal(e.Value(), &s); err != nil || s.Key != e.Key() {
		logger.Warn("ignoring a malformed site in the registry", "key", e.Key(), "err", err)
		return
	}
	r.sites[s.Key] = s
}

// Site returns the site with key.
func (r *SiteRegistry) Site(key string) (Site, bool) {
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

// Put validates s and stores it in the registry.
func (st *Sites) Put(ctx context.Context, s Site) error {
	if err := s.Validate(); err != nil {
		return err
	}
	return putJSON(ctx, st.kv, s.Key, s)
}

// Delete takes the site with key out of the registry. Its figures stay.
func (st *Sites) Delete(ctx context.Context, key string) error {
	return storeErr("delete site "+key, st.kv.Delete(ctx, key))
}

// List returns every site in the registry, read from the bucket, by key.
// Malformed entries are left out.
func (st *Sites) List(ctx context.Context) ([]Site, error) {
	var out []Site
	err := each(ctx, st.kv, func(key string, value []byte) {
		var s Site
		if json.Unmarshal(value, &s) == nil && s.Key == key {
			out = append(out, s)
		}
	})
	slices.SortFunc(out, func(a, b Site) int { return strings.Compare(a.Key, b.Key) })
	return out, err
}

// Seed stores sites in the registry. A site from a config file is the
// declared truth and overwrites the registry's copy; the built-in default
// (overwrite false) only fills a gap, so dashboard edits to it survive.
func (st *Sites) Seed(ctx context.Context, sites []Site, overwrite bool) error {
	for _, s := range sites {
		if overwrite {
			if err := st.Put(ctx, s); err != nil {
				return err
			}
			continue
		}
		if err := s.Validate(); err != nil {
			return err
		}
		data, _ := json.Marshal(s)
		if _, err := st.kv.Create(ctx, s.Key, data); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("seed site %s: %w", s.Key, err)
		}
	}
	return nil
}

// LoadSitesFile reads a JSON array of sites:
//
//	[{"key": "shop", "name": "Shop", "origins": ["https://shop.example"]}]
func LoadSitesFile(path string) ([]Site, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sites file: %w", err)
	}
	var sites []Site
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
