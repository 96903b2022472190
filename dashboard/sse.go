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
)

// update is one SSE event, encoded once and shared by every client.
type update struct {
	version uint64
	frame   []byte // "id: …\nevent: overview\ndata: …\n\n"
}

// overviewUpdate is the data of an "overview" SSE event: the panel's
// numbers, the charts' option objects for setOption (site-wide by chart id,
// per page by path and chart id), and the fragments that replace the page's
// [data-fragment] elements.
type overviewUpdate struct {
	Overview   event.Overview            `json:"overview"`
	Charts     map[string]any            `json:"charts"`
	PageCharts map[string]map[string]any `json:"pageCharts"`
	Fragments  map[string]string         `json:"fragments"`
}

// encodeUpdate renders an overview into an SSE frame.
func encodeUpdate(ctx context.Context, ov event.Overview) (*update, error) {
	frags := map[string]templ.Component{
		"stats":    overviewStats(ov),
		"pages":    pagesTable(ov),
		"rage":     rageTable(ov),
		"visitors": visitorsTable(ov),
	}
	u := overviewUpdate{Overview: ov, Charts: siteCharts(ov), PageCharts: pageCharts(ov), Fragments: make(map[string]string, len(frags))}
	var buf bytes.Buffer
	for name, c := range frags {
		buf.Reset()
		if err := c.Render(ctx, &buf); err != nil {
			return nil, fmt.Errorf("render fragment %s: %w", name, err)
		}
		u.Fragments[name] = buf.String()
	}
	data, err := json.Marshal(u)
	if err != nil {
		return nil, fmt.Errorf("encode overview: %w", err)
	}
	buf.Reset()
	fmt.Fprintf(&buf, "id: %d\nevent: overview\ndata: %s\n\n", ov.Version, data)
	return &update{version: ov.Version, frame: bytes.Clone(buf.Bytes())}, nil
}

// client is one SSE stream. Every update carries the whole panel, so a
// client needs only the newest: its mailbox holds one update, and a newer
// one replaces an unsent older one (the client skips ahead). A slow browser
// therefore costs one pending update, never a growing queue, and never
// holds up the others.
type client struct {
	site    string
	mailbox chan *update
}

// hub fans panel updates out to SSE clients.
type hub struct {
	metrics *metrics

	mu      sync.Mutex
	clients map[string]map[*client]struct{} // by site
	latest  map[string]*update              // newest update per site
	closed  chan struct{}
	once    sync.Once
}

func newHub(m *metrics) *hub {
	return &hub{
		metrics: m,
		clients: make(map[string]map[*client]struct{}),
		latest:  make(map[string]*update),
		closed:  make(chan struct{}),
	}
}

func (h *hub) subscribe(site string) *client {
	c := &client{site: site, mailbox: make(chan *update, 1)}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.clients[site] == nil {
		h.clients[site] = make(map[*client]struct{})
	}
	h.clients[site][c] = struct{}{}
	h.metrics.sseClients.Inc()
	return c
}

func (h *hub) unsubscribe(c *client) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.clients[c.site], c)
	if len(h.clients[c.site]) == 0 {
		delete(h.clients, c.site)
	}
	h.metrics.sseClients.Dec()
}

// publish sends u to every client of site, unless a newer update has been
// seen. It never blocks. Updates come from one NATS subscription, so
// publish has a single caller at a time.
func (h *hub) publish(site string, u *update) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if old := h.latest[site]; old != nil && old.version >= u.version {
		return
	}
	h.latest[site] = u
	for c := range h.clients[site] {
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

func (h *hub) latestFor(site string) *update {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.latest[site]
}

// close ends every stream; clients reconnect after the retry interval.
func (h *hub) close() { h.once.Do(func() { close(h.closed) }) }

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

// serveSSE streams a site's overview: the current state at once (unless
// Last-Event-ID shows the browser has it), then every update. Each event
// holds the whole panel, so resuming after a gap only needs the newest.
func (s *Server) serveSSE(w http.ResponseWriter, r *http.Request) {
	site := r.URL.Query().Get("site")
	if !event.ValidSite(site) {
		http.Error(w, "invalid site", http.StatusBadRequest)
		return
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	c := s.hub.subscribe(site)
	defer s.hub.unsubscribe(c)

	write := func(b []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !write([]byte("retry: " + strconv.Itoa(int(sseRetry/time.Millisecond)) + "\n\n")) {
		return
	}
	lastID, _ := strconv.ParseUint(r.Header.Get("Last-Event-ID"), 10, 64)
	first := s.hub.latestFor(site)
	if first == nil {
		ov, err := s.overview(r.Context(), site)
		if err == nil {
			first, err = encodeUpdate(r.Context(), ov)
		}
		if err != nil {
			s.log.Warn("sse: initial state", "site", site, "err", err)
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
