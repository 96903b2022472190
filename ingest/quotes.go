package ingest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"slices"
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
	Quote *quotes.Quote `json:"quote,omitempty"`
	// AsOf is when the quote's data is as of (Unix ms); Stale says the
	// quote is older than its source's interval allows (Quote.Stale).
	AsOf   int64  `json:"asOf,omitempty"`
	Stale  bool   `json:"stale"`
	Error  string `json:"error,omitempty"`
	CallIn *int64 `json:"callIn"`
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
	s.callIns.add(a.CallIn)
	resp := quoteResponse{Quote: a.Quote, Error: a.Error}
	if a.Quote != nil {
		resp.AsOf, resp.Stale = a.Quote.Time, a.Quote.Stale
	}
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
// fetched since. Streams are bounded per client address and per node, and
// a stream is one goroutine however many symbols it follows.
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
		if slices.Contains(symbols, sym) {
			continue
		}
		if len(symbols) == maxStreamSymbols {
			http.Error(w, fmt.Sprintf("at most %d symbols per stream", maxStreamSymbols), http.StatusBadRequest)
			return
		}
		symbols = append(symbols, sym)
	}
	for _, sym := range symbols {
		if !s.cfg.Quotes.Source().Has(sym) {
			http.Error(w, "unknown symbol "+sym, http.StatusNotFound)
			return
		}
	}
	client := s.cfg.ClientAddrs.Key(r)
	switch s.openStream(client) {
	case trackNodeFull:
		s.metrics.rejected.WithLabelValues("quote_streams").Inc()
		http.Error(w, "too many quote streams on this node, try again later", http.StatusServiceUnavailable)
		return
	case trackTooMany:
		s.metrics.rejected.WithLabelValues("quote_streams_per_ip").Inc()
		http.Error(w, fmt.Sprintf("too many quote streams from %s (limit %d)", client, s.cfg.MaxQuoteStreamsPerIP), http.StatusTooManyRequests)
		return
	}
	defer s.closeStream(client)

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
	sent := make([]int64, len(symbols))
	for i, sym := range symbols {
		sent[i] = last
		s.cfg.Quotes.Want(sym)
	}
	send := func(i int) bool {
		e, ok := s.cfg.Quotes.Latest(symbols[i])
		if !ok || e.Quote == nil || e.Fetched <= sent[i] {
			return true
		}
		q := *e.Quote
		q.Stale = q.StaleAtTime(time.Now().UnixMilli())
		data, _ := json.Marshal(q)
		sent[i] = e.Fetched
		return write(fmt.Appendf(nil, "id: %d\nevent: quote\ndata: %s\n\n", e.Fetched, data))
	}
	// One select over every symbol's change and the stream's own cases:
	// the symbols come first, in order, then the heartbeat (which also
	// keeps the symbols wanted while the stream lives), Shutdown and the
	// end of the request.
	beat := time.NewTicker(15 * time.Second)
	defer beat.Stop()
	cases := make([]reflect.SelectCase, len(symbols), len(symbols)+3)
	for i, sym := range symbols {
		cases[i] = reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(s.cfg.Quotes.Changed(sym))}
		if !send(i) {
			return
		}
	}
	cases = append(cases,
		reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(beat.C)},
		reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(s.stopLoad)},
		reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(r.Context().Done())},
	)
	for {
		chosen, _, _ := reflect.Select(cases)
		switch chosen - len(symbols) {
		case 0:
			for _, sym := range symbols {
				s.cfg.Quotes.Want(sym)
			}
			if !write([]byte(": heartbeat\n\n")) {
				return
			}
		case 1:
			write([]byte("retry: 500\n\n"))
			return
		case 2:
			return
		default:
			cases[chosen].Chan = reflect.ValueOf(s.cfg.Quotes.Changed(symbols[chosen]))
			if !send(chosen) {
				return
			}
		}
	}
}

// openStream counts a quote stream of client in, unless the node
// (trackNodeFull) or the client (trackTooMany) has as many as it may;
// closeStream counts it out.
func (s *Server) openStream(client string) trackResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.streams >= s.cfg.MaxQuoteStreams:
		return trackNodeFull
	case s.streamsPerIP[client] >= s.cfg.MaxQuoteStreamsPerIP:
		return trackTooMany
	}
	s.streams++
	s.streamsPerIP.add(client)
	return trackOK
}

func (s *Server) closeStream(client string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.streams--
	s.streamsPerIP.done(client)
}
