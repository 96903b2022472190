package dashboard

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"

	"github.com/a-h/templ"
	"github.com/nats-io/nats.go"

	"github.com/pulse-analytics/pulse/event"
	"github.com/pulse-analytics/pulse/store"
)

// quotesPanel returns the latest quotes panel, or an empty one.
func (s *Server) quotesPanel(ctx context.Context) (event.QuotesPanel, error) {
	var p event.QuotesPanel
	data, err := s.cfg.Views.Quotes(ctx)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return p, nil
	case err != nil:
		return p, fmt.Errorf("load quotes panel: %w", err)
	}
	return p, event.Decode("quotes panel", data, &p)
}

// quotesNow returns the latest quotes panel: the last one announced, or
// the stored one until then (loaded once; nil while it cannot be read).
func (s *Server) quotesNow(ctx context.Context) *event.QuotesPanel {
	if p := s.quotes.Load(); p != nil {
		return p
	}
	p, err := s.quotesPanel(ctx)
	if err != nil {
		return nil
	}
	s.quotes.CompareAndSwap(nil, &p)
	return s.quotes.Load()
}

// symbolOf returns the panel's symbol sym, or its first one when sym is
// empty or unknown.
func symbolOf(p *event.QuotesPanel, sym string) *event.SymbolPanel {
	for i := range p.Symbols {
		if p.Symbols[i].Last.Symbol == sym {
			return &p.Symbols[i]
		}
	}
	if len(p.Symbols) > 0 {
		return &p.Symbols[0]
	}
	return nil
}

func quotesStreamURL(sym *event.SymbolPanel) string {
	if sym == nil {
		return "/sse/quotes"
	}
	return "/sse/quotes?symbol=" + url.QueryEscape(sym.Last.Symbol)
}

// movers lists the last quotes, biggest moves first.
func movers(p event.QuotesPanel) []event.Quote {
	out := make([]event.Quote, len(p.Symbols))
	for i, s := range p.Symbols {
		out[i] = s.Last
	}
	slices.SortFunc(out, func(a, b event.Quote) int {
		if c := cmp.Compare(math.Abs(b.ChangePercent), math.Abs(a.ChangePercent)); c != 0 {
			return c
		}
		return cmp.Compare(a.Symbol, b.Symbol)
	})
	return out
}

func changeClass(change float64) string {
	switch {
	case change > 0:
		return "up"
	case change < 0:
		return "down"
	}
	return ""
}

func (s *Server) serveQuotes(w http.ResponseWriter, r *http.Request) {
	p, err := s.quotesPanel(r.Context())
	if err != nil {
		s.log.Error("quotes page", "err", err)
		http.Error(w, "could not load the quotes panel", http.StatusServiceUnavailable)
		return
	}
	me := meFrom(r.Context())
	// The sites this user sees, for links to their activity beside the
	// symbol.
	var sites []string
	for _, key := range s.registry.Keys() {
		if me.canSee(key) {
			sites = append(sites, key)
		}
	}
	// The attention chart beside the symbol: the site asked for, or the
	// first the user sees; the page stands without it.
	var beside *event.Overview
	if len(sites) > 0 {
		site := r.URL.Query().Get("site")
		if !slices.Contains(sites, site) {
			site = sites[0]
		}
		if ov, err := s.overview(r.Context(), site); err == nil {
			beside = &ov
		}
	}
	s.render(w, r, http.StatusOK, quotesPage(me, p, symbolOf(&p, r.URL.Query().Get("symbol")), sites, beside))
}

// serveQuotesSSE streams the quotes panel as seen for one symbol:
// GET /sse/quotes?symbol=IBM.
func (s *Server) serveQuotesSSE(w http.ResponseWriter, r *http.Request) {
	sym := r.URL.Query().Get("symbol")
	if len(sym) > 10 {
		http.Error(w, "invalid symbol", http.StatusBadRequest)
		return
	}
	s.sse(w, r, quotesKey(sym), func(ctx context.Context) (*update, error) {
		p, err := s.quotesPanel(ctx)
		if err != nil {
			return nil, err
		}
		return encodeQuotes(ctx, p, sym)
	})
}

// encodeQuotes renders the quotes panel, as seen for sym, into an SSE frame.
func encodeQuotes(ctx context.Context, p event.QuotesPanel, sym string) (*update, error) {
	return encodeFrame(ctx, "quotes", p.Version, panelUpdate{Panel: p, Charts: quoteCharts(p, symbolOf(&p, sym))},
		map[string]templ.Component{"poll-stats": pollStats(p), "movers": moversTable(p)})
}

// onQuotes fans a quotes panel out to the streams that follow it, one
// rendering per symbol watched.
func (s *Server) onQuotes(msg *nats.Msg) {
	var p event.QuotesPanel
	if err := event.Decode("quotes panel", msg.Data, &p); err != nil {
		s.log.Warn("bad quotes panel", "err", err)
		return
	}
	s.quotes.Store(&p)
	syms := []string{""}
	for _, sp := range p.Symbols {
		syms = append(syms, sp.Last.Symbol)
	}
	for _, sym := range syms {
		key := quotesKey(sym)
		if !s.hub.watched(key) {
			// Rendered when someone watches; a stale copy must not be
			// served to them first.
			s.hub.forget(key)
			continue
		}
		u, err := encodeQuotes(context.Background(), p, sym)
		if err != nil {
			s.log.Error("quotes update", "err", err)
			return
		}
		s.hub.publish(key, u)
	}
}
