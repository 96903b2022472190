package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/a-h/templ"

	"github.com/pulse-analytics/pulse/event"
	"github.com/pulse-analytics/pulse/store"
)

// update is one SSE event, encoded once and shared by every client.
type update struct {
	version uint64
	frame   []byte // "id: …\nevent: overview\ndata: …\n\n"
	// live marks a live panel: the site's totals between two overviews.
	// It has no id (a browser resumes from the last whole panel) and is
	// never a stream's first event.
	live bool
}

// panelUpdate is the data of an SSE event: the panel's numbers, the
// charts' option objects for setOption (by chart id, and per page by path
// and chart id), and the fragments that replace the page's
// [data-fragment] elements.
type panelUpdate struct {
	Panel      any                       `json:"panel"`
	Charts     map[string]any            `json:"charts"`
	PageCharts map[string]map[string]any `json:"pageCharts,omitempty"`
	// SymbolCharts are charts drawn per quote symbol, by symbol and
	// chart id: the page shows the symbol picked in its select.
	SymbolCharts map[string]map[string]any `json:"symbolCharts,omitempty"`
	Fragments    map[string]string         `json:"fragments"`
}

// encodeUpdate renders a site's overview into an SSE frame, with what the
// ingest nodes in told tell clients and the site's attention beside each
// symbol of quotes (nil when there are none).
func encodeUpdate(ctx context.Context, ov event.Overview, told []store.NodeStatus, quotes *event.QuotesPanel) (*update, error) {
	u := panelUpdate{Panel: ov, Charts: siteCharts(ov), PageCharts: pageCharts(ov), SymbolCharts: attentionCharts(ov, quotes)}
	return encodeFrame(ctx, "overview", ov.Version, u, map[string]templ.Component{
		"stats":    overviewStats(ov),
		"pages":    pagesTable(ov),
		"elements": elementsTable(ov),
		"rage":     rageTable(ov),
		"visitors": visitorsTable(ov),
		"told":     toldTable(told),
	})
}

// encodeFrame renders one SSE event: "id: version", "event: name", and u
// with the rendered fragments as data.
func encodeFrame(ctx context.Context, name string, version uint64, u panelUpdate, frags map[string]templ.Component) (*update, error) {
	u.Fragments = make(map[string]string, len(frags))
	var buf bytes.Buffer
	for id, c := range frags {
		buf.Reset()
		if err := c.Render(ctx, &buf); err != nil {
			return nil, fmt.Errorf("render fragment %s: %w", id, err)
		}
		u.Fragments[id] = buf.String()
	}
	// The JSON goes straight into the frame: an update can be hundreds
	// of KB. encoding/json writes no newline inside, which would end the
	// SSE data line; the Encoder ends it with one.
	var frame bytes.Buffer
	frame.WriteString("id: " + strconv.FormatUint(version, 10) + "\nevent: " + name + "\ndata: ")
	if err := json.NewEncoder(&frame).Encode(u); err != nil {
		return nil, fmt.Errorf("encode %s: %w", name, err)
	}
	frame.WriteByte('\n')
	return &update{version: version, frame: frame.Bytes()}, nil
}

// client is one SSE stream. Every update carries the whole panel, so a
// client needs only the newest: its mailbox holds one update, and a newer
// one replaces an unsent older one (the client skips ahead). A slow browser
// therefore costs one pending update, never a growing queue, and never
// holds up the others.
type client struct {
	key     string
	mailbox chan *update
}

// hub fans panel updates out to SSE clients.
type hub struct {
	metrics *metrics

	mu      sync.Mutex
	clients map[string]map[*client]struct{} // by key (see siteKey)
	latest  map[string]*update              // newest whole panel per key
	newest  map[string]uint64               // newest version per key, live panels included
	closed  chan struct{}
	once    sync.Once
}

func newHub(m *metrics) *hub {
	return &hub{
		metrics: m,
		clients: make(map[string]map[*client]struct{}),
		latest:  make(map[string]*update),
		newest:  make(map[string]uint64),
		closed:  make(chan struct{}),
	}
}

func (h *hub) subscribe(key string) *client {
	c := &client{key: key, mailbox: make(chan *update, 1)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.clients[key] == nil {
		h.clients[key] = make(map[*client]struct{})
	}
	h.clients[key][c] = struct{}{}
	h.metrics.sseClients.Inc()
	return c
}

func (h *hub) unsubscribe(c *client) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.clients[c.key], c)
	if len(h.clients[c.key]) == 0 {
		delete(h.clients, c.key)
	}
	h.metrics.sseClients.Dec()
}

// publish sends u to every client of key, unless a newer update has been
// seen. It never blocks. A live update may take the place of a whole one
// a slow client has not been sent; the next whole one follows within the
// aggregator's tick. Updates of a key come from one NATS subscription,
// so publish has a single caller per key at a time.
func (h *hub) publish(key string, u *update) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.newest[key] >= u.version {
		return
	}
	h.newest[key] = u.version
	if !u.live {
		h.latest[key] = u
	}
	for c := range h.clients[key] {
		select {
		case c.mailbox <- u:
		default:
			// Replace the unsent update with this newer one.
			select {
			case <-c.mailbox:
				h.metrics.sseSkipped.Inc()
			default:
			}
			c.mailbox <- u
		}
	}
}

func (h *hub) latestFor(key string) *update {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.latest[key]
}

// watched reports whether key has clients.
func (h *hub) watched(key string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.clients[key]) > 0
}

// forget drops the newest update of key, so the next client loads the
// state afresh.
func (h *hub) forget(key string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.latest, key)
	delete(h.newest, key)
}

// close ends every stream; clients reconnect after the retry interval.
func (h *hub) close() { h.once.Do(func() { close(h.closed) }) }

// startSSE answers with an event stream and returns a writer that sends
// and flushes b within sseWriteTimeout, reporting whether it could.
func startSSE(w http.ResponseWriter) (write func(b []byte) bool) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	return func(b []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
}

// SSE timings.
const (
	// sseHeartbeat keeps proxies from closing an idle stream; 15 s is
	// under every common idle timeout.
	sseHeartbeat = 15 * time.Second
	// sseWriteTimeout is the longest one write may take before the client
	// is dropped; a browser that reads nothing for this long is gone or
	// hopelessly behind.
	sseWriteTimeout = 10 * time.Second
	// sseRetry is the reconnect delay told to browsers.
	sseRetry = 2 * time.Second
)

// serveSSE streams a site's overview: GET /sse?site=SITE.
func (s *Server) serveSSE(w http.ResponseWriter, r *http.Request) {
	site := r.URL.Query().Get("site")
	if !event.ValidSite(site) {
		http.Error(w, "invalid site", http.StatusBadRequest)
		return
	}
	if !meFrom(r.Context()).canSee(site) {
		errNoAccess(w, site)
		return
	}
	s.sse(w, r, siteKey(site), func(ctx context.Context) (*update, error) {
		ov, err := s.overview(ctx, site)
		if err != nil {
			return nil, err
		}
		return encodeUpdate(ctx, ov, s.told.current(time.Now()), s.quotesNow(ctx))
	})
}

// Hub keys: a site's overview, or one symbol's view of the quotes panel.
func siteKey(site string) string  { return "site:" + site }
func quotesKey(sym string) string { return "quotes:" + sym }

// sse serves one SSE stream of the hub's key: the current state at once
// (from the hub, or load when the hub has none yet), unless Last-Event-ID
// shows the browser has it, then every update. Each event holds the whole
// panel, so resuming after a gap only needs the newest.
func (s *Server) sse(w http.ResponseWriter, r *http.Request, key string, load func(context.Context) (*update, error)) {
	write := startSSE(w)
	c := s.hub.subscribe(key)
	defer s.hub.unsubscribe(c)

	if !write([]byte("retry: " + strconv.Itoa(int(sseRetry/time.Millisecond)) + "\n\n")) {
		return
	}
	lastID, _ := strconv.ParseUint(r.Header.Get("Last-Event-ID"), 10, 64)
	first := s.hub.latestFor(key)
	if first == nil {
		var err error
		if first, err = load(r.Context()); err != nil {
			s.log.Warn("sse: initial state", "key", key, "err", err)
		}
	}
	sent := lastID
	if first != nil && first.version != lastID {
		if !write(first.frame) {
			return
		}
		sent = first.version
	}
	beat := time.NewTicker(sseHeartbeat)
	defer beat.Stop()
	for {
		select {
		case u := <-c.mailbox:
			if u.version <= sent {
				continue
			}
			if !write(u.frame) {
				s.metrics.sseDropped.Inc()
				return
			}
			sent = u.version
		case <-beat.C:
			if !write([]byte(": heartbeat\n\n")) {
				s.metrics.sseDropped.Inc()
				return
			}
		case <-s.hub.closed:
			write([]byte("retry: 500\n\n"))
			return
		case <-r.Context().Done():
			return
		}
	}
}
