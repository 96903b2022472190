package ingest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/pulse-analytics/pulse/quotes"
)

// QuoteService answers quote polls from the cluster's shared quote cache.
type QuoteService interface {
	// Poll answers a poll for symbol from a widget holding a quote as of
	// since (Unix ms); loadLevel is this node's load level. Safe for
	// concurrent use; it may wait briefly for a symbol's first quote.
	Poll(ctx context.Context, symbol string, since int64, loadLevel int) quotes.Answer
	// Source is the upstream, which says which symbols exist.
	Source() quotes.Source
	// Latest returns the cached state of symbol, if any.
	Latest(symbol string) (quotes.Entry, bool)
	// Changed returns a channel closed at symbol's next change.
	Changed(symbol string) <-chan struct{}
	// Want keeps symbol fetched while someone follows it.
	Want(symbol string)
}

// quoteResponse is the body of GET /v1/quote. CallIn is in milliseconds;
// null tells the widget to stop polling.
type quoteResponse struct {
	Quote  *quotes.Quote `json:"quote,omitempty"`
	Error  string        `json:"error,omitempty"`
	CallIn *int64        `json:"callIn"`
}

// maxStreamSymbols bounds the symbols of one quote stream.
const maxStreamSymbols = 20

// parseSymbol reads a symbol parameter, case-insensitively.
func parseSymbol(s string) (string, error) {
	sym := strings.ToUpper(strings.TrimSpace(s))
	if !quotes.ValidSymbol(sym) {
		return "", fmt.Errorf("invalid symbol %q: want 1 to 6 letters or digits, starting with a letter, and an optional .X or -X suffix", truncate(s, 20))
	}
	return sym, nil
}

// serveQuote answers GET /v1/quote?symbol=IBM[&since=ms].
func (s *Server) serveQuote(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// Quotes are public data, fetched by widgets on any site.
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Cache-Control", "no-store")
	if s.cfg.Quotes == nil {
		writeQuote(w, http.StatusServiceUnavailable, quoteResponse{Error: "quotes are disabled on this server"})
		return
	}
	q := r.URL.Query()
	sym, err := parseSymbol(q.Get("symbol"))
	if err != nil {
		s.metrics.rejected.WithLabelValues("bad_symbol").Inc()
		writeQuote(w, http.StatusBadRequest, quoteResponse{Error: err.Error()})
		return
	}
	since, _ := strconv.ParseInt(q.Get("since"), 10, 64)
	a := s.cfg.Quotes.Poll(r.Context(), sym, since, int(s.level.Load()))
	resp := quoteResponse{Quote: a.Quote, Error: a.Error}
	status := http.StatusOK
	switch {
	case a.CallIn == nil:
		status = http.StatusNotFound
	case a.Quote == nil:
		status = http.StatusServiceUnavailable
	}
	if a.CallIn != nil {
		ms := a.CallIn.Milliseconds()
		resp.CallIn = &ms
	}
	writeQuote(w, status, resp)
}

func writeQuote(w http.ResponseWriter, status int, resp quoteResponse) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(resp)
}

// serveQuoteStream pushes quotes by SSE: GET /v1/quotes/stream?symbols=A,B.
// Every event carries one symbol's quote; its id is the time the quote was
// fetched, so a browser resuming with Last-Event-ID gets only the quotes
// fetched since.
func (s *Server) serveQuoteStream(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Access-Control-Allow-Origin", "*")
	if s.cfg.Quotes == nil {
		http.Error(w, "quotes are disabled on this server", http.StatusServiceUnavailable)
		return
	}
	var symbols []string
	for _, raw := range strings.Split(r.URL.Query().Get("symbols"), ",") {
		sym, err := parseSymbol(raw)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if !s.cfg.Quotes.Source().Has(sym) {
			http.Error(w, "unknown symbol "+sym, http.StatusNotFound)
			return
		}
		symbols = append(symbols, sym)
	}
	if len(symbols) > maxStreamSymbols {
		http.Error(w, fmt.Sprintf("at most %d symbols per stream", maxStreamSymbols), http.StatusBadRequest)
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	write := func(b []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(writeWait))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !write([]byte("retry: 2000\n\n")) {
		return
	}
	last, _ := strconv.ParseInt(r.Header.Get("Last-Event-ID"), 10, 64)
	sent := make(map[string]int64, len(symbols))
	for _, sym := range symbols {
		sent[sym] = last
		s.cfg.Quotes.Want(sym)
	}
	ctx := r.Context()
	changed := make(chan string, len(symbols))
	for _, sym := range symbols {
		go func() {
			for {
				select {
				case <-s.cfg.Quotes.Changed(sym):
					select {
					case changed <- sym:
					case <-ctx.Done():
						return
					}
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	send := func(sym string) bool {
		e, ok := s.cfg.Quotes.Latest(sym)
		if !ok || e.Quote == nil || e.Fetched <= sent[sym] {
			return true
		}
		data, _ := json.Marshal(e.Quote)
		sent[sym] = e.Fetched
		return write(fmt.Appendf(nil, "id: %d\nevent: quote\ndata: %s\n\n", e.Fetched, data))
	}
	for _, sym := range symbols {
		if !send(sym) {
			return
		}
	}
	// The heartbeat also keeps the symbols wanted while the stream lives.
	beat := time.NewTicker(15 * time.Second)
	defer beat.Stop()
	for {
		select {
		case sym := <-changed:
			if !send(sym) {
				return
			}
		case <-beat.C:
			for _, sym := range symbols {
				s.cfg.Quotes.Want(sym)
			}
			if !write([]byte(": heartbeat\n\n")) {
				return
			}
		case <-s.stopLoad:
			write([]byte("retry: 500\n\n"))
			return
		case <-ctx.Done():
			return
		}
	}
}
