package dashboard

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/a-h/templ"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pulse-analytics/pulse/event"
	"github.com/pulse-analytics/pulse/natsutil/follow"
)

// A visitor page follows one visitor's events as they arrive on the
// ACTIVITY stream: it starts trailReplay back, so the last minutes can be
// replayed, and goes on live. Nothing is stored for it: each open page
// follows the site's subject with a consumer of its own and keeps what it
// needs in a trail, which is bounded; no page content is ever recorded,
// only positions, kinds and selectors, as the tracker sends them.
const (
	// trailReplay is how far back a visitor page starts.
	trailReplay = 5 * time.Minute
	// maxTrailPoints bounds the events a trail holds; the oldest quarter
	// goes when it is full.
	maxTrailPoints = 20_000
	// maxTrailPages bounds the pages a trail lists; events on further
	// pages are counted under otherTrailPage.
	maxTrailPages  = 50
	otherTrailPage = "(other pages)"
	// trailFrame bounds the points of one SSE trail event, so a replay
	// arrives in pieces the browser draws as they come.
	trailFrame = 5_000
	// visitorTick is how often the page's figures and chart are sent
	// when they changed; the cursor's points go out as they arrive.
	visitorTick = time.Second
	// chartLead is how far before the visitor's first event their chart
	// starts.
	chartLead = 10_000 // ms
	// maxVisitorLen bounds a visitor id, as ingest does.
	maxVisitorLen = 128
)

// trailPoint is one event of the visitor, as the visitor page draws it.
type trailPoint struct {
	T   int64  `json:"t"`
	K   string `json:"k"`
	X   int32  `json:"x"`
	Y   int32  `json:"y"`
	VW  int32  `json:"vw,omitempty"`
	VH  int32  `json:"vh,omitempty"`
	PH  int32  `json:"ph,omitempty"`
	P   string `json:"p,omitempty"`
	Sel string `json:"sel,omitempty"`
}

// visitorPageStats is what one visitor did on one page.
type visitorPageStats struct {
	Path       string `json:"path"`
	Events     uint64 `json:"events"`
	Clicks     uint64 `json:"clicks"`
	DeadClicks uint64 `json:"deadClicks"`
	First      int64  `json:"first"`
	Last       int64  `json:"last"`
}

// visitorPanel is the visitor page's figures.
type visitorPanel struct {
	Site    string             `json:"site"`
	Visitor string             `json:"visitor"`
	Version uint64             `json:"version"`
	Updated int64              `json:"updated"`
	Since   int64              `json:"since"` // start of the replay
	Events  uint64             `json:"events"`
	Clicks  uint64             `json:"clicks"`
	First   int64              `json:"first,omitempty"`
	Last    int64              `json:"last,omitempty"`
	Pages   []visitorPageStats `json:"pages"`
	// PerSecond and PerSecondByKind are the visitor's events per second
	// from Since, in the form of event.Overview's.
	PerSecond       []event.Point       `json:"perSecond"`
	PerSecondByKind map[string][]uint64 `json:"perSecondByKind"`
}

// trail is what a visitor page knows of its visitor. The follower adds to
// it; the page's stream reads it.
type trail struct {
	visitor string
	since   int64

	mu      sync.Mutex
	points  []trailPoint
	dropped uint64 // points dropped from the front: points[i] is number dropped+i
	events  uint64
	clicks  uint64
	first   int64
	last    int64
	pages   map[string]*visitorPageStats
	seconds map[int64]*[event.KindSlots]uint64
	changed bool          // since the last panel
	wake    chan struct{} // signalled when points are added
}

func newTrail(visitor string, since time.Time) *trail {
	return &trail{
		visitor: visitor,
		since:   since.UnixMilli(),
		pages:   make(map[string]*visitorPageStats),
		seconds: make(map[int64]*[event.KindSlots]uint64),
		wake:    make(chan struct{}, 1),
	}
}

// add takes the visitor's events of one batch.
func (t *trail) add(b *event.Batch) {
	t.mu.Lock()
	defer t.mu.Unlock()
	added := false
	for i := range b.Events {
		e := &b.Events[i]
		if b.VisitorOf(e) != t.visitor || e.T < t.since {
			continue
		}
		added = true
		t.count(e)
		if len(t.points) >= maxTrailPoints {
			drop := maxTrailPoints / 4
			t.points = append(t.points[:0], t.points[drop:]...)
			t.dropped += uint64(drop)
		}
		t.points = append(t.points, trailPoint{
			T: e.T, K: e.Kind.String(), X: e.X, Y: e.Y, VW: e.VW, VH: e.VH, PH: e.PH, P: e.Path, Sel: e.Target,
		})
	}
	if added {
		t.changed = true
		select {
		case t.wake <- struct{}{}:
		default:
		}
	}
}

// count adds e to the trail's figures; t.mu is held.
func (t *trail) count(e *event.Event) {
	t.events++
	if t.first == 0 || e.T < t.first {
		t.first = e.T
	}
	t.last = max(t.last, e.T)
	path := e.Path
	if path == "" {
		path = "/"
	}
	p := t.pages[path]
	if p == nil {
		if len(t.pages) >= maxTrailPages {
			path = otherTrailPage
			p = t.pages[path]
		}
		if p == nil {
			p = &visitorPageStats{Path: path, First: e.T}
			t.pages[path] = p
		}
	}
	p.Events++
	p.First, p.Last = min(p.First, e.T), max(p.Last, e.T)
	switch e.Kind {
	case event.KindClick:
		t.clicks++
		p.Clicks++
	case event.KindDeadClick:
		p.DeadClicks++
	}
	sec := e.T / 1000 * 1000
	c := t.seconds[sec]
	if c == nil {
		c = new([event.KindSlots]uint64)
		t.seconds[sec] = c
	}
	if int(e.Kind) < len(c) {
		c[e.Kind]++
	}
}

// pointsFrom returns the points from number n on (fewer when some of
// them were dropped, and at most trailFrame), the number of the first one
// returned, and the number after the last.
func (t *trail) pointsFrom(n uint64) (pts []trailPoint, from, next uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	from = max(n, t.dropped)
	i := int(from - t.dropped)
	j := min(len(t.points), i+trailFrame)
	return slices.Clone(t.points[i:j]), from, t.dropped + uint64(j)
}

// panel returns the figures at now, and whether they changed since the
// last call. Seconds before the replay's start are dropped as they leave
// the window.
func (t *trail) panel(site string, now time.Time) (visitorPanel, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	changed := t.changed
	t.changed = false
	// The chart starts shortly before the visitor's first event in the
	// window, so a visitor who just arrived is not a sliver at its end.
	from := max(t.since, now.Add(-trailReplay).UnixMilli(), t.first-chartLead) / 1000 * 1000
	to := now.UnixMilli() / 1000 * 1000
	for sec := range t.seconds {
		if sec < from {
			delete(t.seconds, sec)
			changed = true
		}
	}
	p := visitorPanel{
		Site: site, Visitor: t.visitor, Updated: now.UnixMilli(), Since: t.since,
		Events: t.events, Clicks: t.clicks, First: t.first, Last: t.last,
		PerSecondByKind: make(map[string][]uint64),
	}
	for _, ps := range t.pages {
		p.Pages = append(p.Pages, *ps)
	}
	slices.SortFunc(p.Pages, func(a, b visitorPageStats) int {
		return cmp.Or(cmp.Compare(b.Last, a.Last), cmp.Compare(a.Path, b.Path))
	})
	n := int((to-from)/1000) + 1
	p.PerSecond = make([]event.Point, n)
	for i := range n {
		sec := from + int64(i)*1000
		p.PerSecond[i].T = sec
		c := t.seconds[sec]
		if c == nil {
			continue
		}
		for k, v := range c {
			if v == 0 {
				continue
			}
			p.PerSecond[i].N += v
			name := event.Kind(k).String()
			if p.PerSecondByKind[name] == nil {
				p.PerSecondByKind[name] = make([]uint64, n)
			}
			p.PerSecondByKind[name][i] = v
		}
	}
	return p, changed
}

// validVisitor reports whether id can be a visitor id: what trackers send
// (22 characters of URL-safe base64) or a classic client's id, 1 to
// maxVisitorLen bytes of UTF-8 without control characters.
func validVisitor(id string) bool {
	if id == "" || len(id) > maxVisitorLen || !utf8.ValidString(id) {
		return false
	}
	for _, r := range id {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// visitorPath is the address of a visitor's page.
func visitorPath(site, visitor string) templ.SafeURL {
	return templ.SafeURL("/sites/" + site + "/visitors/" + url.PathEscape(visitor))
}

// visitorSSE is the address of a visitor's stream.
func visitorSSE(site, visitor string) string {
	return "/sse/visitor?" + url.Values{"site": {site}, "visitor": {visitor}}.Encode()
}

// serveVisitor renders a visitor's page: GET /sites/{site}/visitors/{visitor}.
// Its stream fills it in.
func (s *Server) serveVisitor(w http.ResponseWriter, r *http.Request) {
	site, visitor := r.PathValue("site"), r.PathValue("visitor")
	if !event.ValidSite(site) || !validVisitor(visitor) {
		http.NotFound(w, r)
		return
	}
	if !meFrom(r.Context()).canSee(site) {
		http.Error(w, "You have no access to this site; an admin can grant it on the Users page.", http.StatusForbidden)
		return
	}
	now := time.Now()
	p, _ := newTrail(visitor, now.Add(-trailReplay)).panel(site, now)
	s.render(w, r, http.StatusOK, visitorPage(meFrom(r.Context()), p))
}

// serveVisitorSSE streams one visitor: GET /sse/visitor?site=S&visitor=V.
// Events "trail" carry the visitor's points as they arrive ({"from": the
// number of the first, "points": […]}; a stream starts at 0 with the
// replay); events "visitor" carry the figures, the chart and the
// fragments, once a second when they changed.
func (s *Server) serveVisitorSSE(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	site, visitor := q.Get("site"), q.Get("visitor")
	if !event.ValidSite(site) || !validVisitor(visitor) {
		http.Error(w, "invalid site or visitor", http.StatusBadRequest)
		return
	}
	me := meFrom(r.Context())
	if !me.canSee(site) {
		errNoAccess(w, site)
		return
	}
	if !s.takeStream(w, s.visitorStreams, me.User, "visitor pages: ") {
		return
	}
	defer s.visitorStreams.release(me.User)

	t := newTrail(visitor, time.Now().Add(-trailReplay))
	f, err := follow.Start(r.Context(), s.cfg.JetStream, follow.Options{
		Stream: event.StreamActivity,
		Filter: []string{event.ActivitySubject(site)},
		Since:  time.UnixMilli(t.since),
		Logger: s.log,
	}, func(msg jetstream.Msg) {
		var b event.Batch
		if err := event.DecodeBatches(msg.Data(), &b, t.add); err != nil {
			s.log.Warn("visitor page: batch not decoded", "site", site, "err", err)
		}
	})
	if err != nil {
		s.log.Warn("visitor page: activity not followed", "site", site, "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "the site's activity cannot be read now; try again soon"})
		return
	}
	defer f.Stop(time.Second)

	write := startSSE(w)
	if !write([]byte("retry: " + strconv.Itoa(int(sseRetry/time.Millisecond)) + "\n\n")) {
		return
	}
	var (
		sent    uint64 // trail points sent
		version uint64
		buf     []byte
	)
	sendPanel := func(force bool) bool {
		now := time.Now()
		p, changed := t.panel(site, now)
		if !changed && !force {
			return true
		}
		version++
		p.Version = version
		u, err := encodeVisitorUpdate(r.Context(), p)
		if err != nil {
			s.log.Error("visitor page: render", "err", err)
			return false
		}
		return write(u.frame)
	}
	sendPoints := func() bool {
		for {
			pts, from, next := t.pointsFrom(sent)
			if len(pts) == 0 {
				return true
			}
			buf = append(buf[:0], "event: trail\ndata: "...)
			data, _ := json.Marshal(struct {
				From   uint64       `json:"from"`
				Points []trailPoint `json:"points"`
			}{from, pts})
			buf = append(append(buf, data...), "\n\n"...)
			if !write(buf) {
				s.metrics.sseDropped.Inc()
				return false
			}
			sent = next
		}
	}
	if !sendPanel(true) {
		return
	}
	tick := time.NewTicker(visitorTick)
	defer tick.Stop()
	beat := time.NewTicker(sseHeartbeat)
	defer beat.Stop()
	for {
		select {
		case <-t.wake:
			if !sendPoints() {
				return
			}
		case <-tick.C:
			if !sendPanel(false) {
				return
			}
		case <-beat.C:
			if !write([]byte(": heartbeat\n\n")) {
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

// encodeVisitorUpdate renders a visitor's figures into an SSE frame.
func encodeVisitorUpdate(ctx context.Context, p visitorPanel) (*update, error) {
	u, err := encodeFrame(ctx, "visitor", p.Version, panelUpdate{Panel: p, Charts: visitorCharts(p)}, map[string]templ.Component{
		"stats": visitorStats(p),
		"pages": visitorPagesTable(p),
	})
	if err != nil {
		return nil, fmt.Errorf("visitor %s: %w", p.Visitor, err)
	}
	return u, nil
}

// Chart ids of a visitor page.
const chartVisitorActivity = "visitor-activity"

func visitorCharts(p visitorPanel) map[string]any {
	return map[string]any{
		chartVisitorActivity: perSecondOptions(chartVisitorActivity, "va-", p.PerSecond, p.PerSecondByKind),
	}
}
