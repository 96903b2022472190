package store

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"
)

// Views is the bucket of every site's latest panels and the quotes panel,
// as the aggregator publishes them (event's panel encodings), for a
// dashboard to render before the next update comes.
type Views struct{ kv jetstream.KeyValue }

// PutPanel stores the latest panel (event.PanelOverview, event.PanelHeat)
// of site.
func (v *Views) PutPanel(ctx context.Context, site, panel string, data []byte) error {
	_, err := v.kv.Put(ctx, viewKey(site, panel), data)
	return storeErr("store view "+viewKey(site, panel), err)
}

// Panel returns the latest panel of site, or ErrNotFound.
func (v *Views) Panel(ctx context.Context, site, panel string) ([]byte, error) {
	return get(ctx, v.kv, viewKey(site, panel))
}

// PutQuotes stores the latest quotes panel.
func (v *Views) PutQuotes(ctx context.Context, data []byte) error {
	_, err := v.kv.Put(ctx, quotesViewKey, data)
	return storeErr("store view "+quotesViewKey, err)
}

// Quotes returns the latest quotes panel, or ErrNotFound.
func (v *Views) Quotes(ctx context.Context) ([]byte, error) {
	return get(ctx, v.kv, quotesViewKey)
}
