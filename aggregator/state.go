package aggregator

import (
	"cmp"
	"maps"
	"slices"
	"time"

	"github.com/pulse-analytics/pulse/event"
)

// Windows and bounds. Every map a site holds is bounded, so a flood of
// visitors, pages or sessions costs bounded memory and snapshot size.
const (
	// chartWindow is the span of the per-second chart (the last minute).
	chartWindow = 60
	// keepSeconds is how many seconds of per-second counts a site keeps:
	// the chart's minute plus late batches.
	keepSeconds = 2 * chartWindow
	// hourWindow is the span of the per-minute chart, in minutes.
	hourWindow = 60
	// keepMinutes is how many minutes of per-minute counts a site keeps:
	// a day, which the snapshot carries through restarts.
	keepMinutes = 24 * 60
	// dayBucket is the width of a point of the 24-hour chart, in minutes.
	dayBucket = 10
	// topVisitors, topPages and recentRage bound the overview's lists.
	topVisitors = 10
	topPages    = 5
	recentRage  = 10
	// maxPages bounds the pages tracked per site; further pages are
	// counted under otherPage.
	maxPages  = 50
	otherPage = "(other pages)"
	// maxElements bounds the elements counted per page; clicks on
	// further ones are counted under otherElement. topElements bounds a
	// page's list in the overview.
	maxElements  = 100
	otherElement = "(other elements)"
	topElements  = 10
	// maxHeatCells bounds each heatmap in an overview to its hottest cells.
	maxHeatCells = 1000
	// heatPages and heatPanelCells bound the heat panel: its busiest
	// pages, each heatmap by width at most that many cells.
	heatPages      = 10
	heatPanelCells = 300
	// maxSessions bounds sessions tracked for scroll depth, rage clicks
	// and re-sent batches; at the bound, the tenth seen longest ago goes
	// (evictSessions).
	maxSessions = 20_000
	// maxDepthPages bounds the pages a session remembers the scroll
	// depth of; beyond it the first page by key is forgotten (a page
	// view of it again counts anew). Without a bound one session
	// scrolling new paths grew without end.
	maxDepthPages = 16
	// sessionIdle is how long a session's scroll depth is remembered
	// without events; a page view ends well before that.
	sessionIdle = 30 * time.Minute
	// futureSlack is how far ahead of its batch an event's time may lie;
	// clocks within one cluster agree closer than that.
	futureSlack = 5_000
)

// Rage clicks: at least rageMinClicks clicks, each within rageWindow of the
// burst's last click and rageRadius pixels of it, on one page. These are the
// thresholds common analytics tools use.
const (
	rageWindow    = 1000 // ms
	rageRadius    = 30   // px
	rageMinClicks = 3
)

// Kinds indexes per-kind counts by event.Kind.
type Kinds [event.KindSlots]uint64

func (k *Kinds) total() (n uint64) {
	for _, v := range k {
		n += v
	}
	return n
}

// Minute is one minute of a site's activity.
type Minute struct {
	ByKind     Kinds  `json:"byKind"`
	Arrivals   uint64 `json:"arrivals,omitempty"`
	Departures uint64 `json:"departures,omitempty"`
}

// Page is the activity on one page.
type Page struct {
	// Minutes holds the page's activity by Unix minute, for hourWindow:
	// events by kind, and arrivals and departures of page views.
	Minutes    map[int64]*Minute `json:"minutes"`
	Events     uint64            `json:"events"`
	Clicks     uint64            `json:"clicks"`
	RageClicks uint64            `json:"rageClicks"`
	DeadClicks uint64            `json:"deadClicks,omitempty"`
	// Elements counts clicks by the clicked element's selector: at most
	// maxElements selectors, and the clicks on others under otherElement.
	Elements      map[string]*Element `json:"elements,omitempty"`
	ScrollReached [10]uint64          `json:"scrollReached"`
	PageViews     uint64              `json:"pageViews"`
	ClickHeat     map[int]uint64      `json:"clickHeat"`
	MoveHeat      map[int]uint64      `json:"moveHeat"`
	// ClickHeatBy and MoveHeatBy split the heatmaps by viewport width
	// (event.WidthBucket), for the overlay on the page itself.
	ClickHeatBy [event.WidthBuckets]map[int]uint64 `json:"clickHeatBy"`
	MoveHeatBy  [event.WidthBuckets]map[int]uint64 `json:"moveHeatBy"`

	// key is the page's key in Site.Pages: sessions' maps of pages use
	// it, so they share its bytes instead of holding a copy per event.
	key string
}

// Element is the clicks on one element of a page.
type Element struct {
	Clicks     uint64 `json:"clicks,omitempty"`
	RageClicks uint64 `json:"rage,omitempty"`
	DeadClicks uint64 `json:"dead,omitempty"`
	// Spots counts where on the element its clicks fell, on a grid of
	// spotGrid × spotGrid parts of its box (row*spotGrid+col), from the
	// click's offset within the box; clicks without one are not in it.
	Spots map[int]uint64 `json:"spots,omitempty"`
}

// spotGrid is the side of an element's grid of click spots.
const spotGrid = 10

// addSpot counts a click at offset (ox, oy), in thousandths of the box.
func (el *Element) addSpot(ox, oy int32) {
	if ox == 0 && oy == 0 {
		return // no offset sent
	}
	if el.Spots == nil {
		el.Spots = make(map[int]uint64)
	}
	cell := func(o int32) int { return min(max(int(o)*spotGrid/1000, 0), spotGrid-1) }
	el.Spots[cell(oy)*spotGrid+cell(ox)]++
}

// fillHeatBy makes p's heatmaps by width usable (a new page, or one from a
// snapshot written before they existed).
func (p *Page) fillHeatBy() {
	for i := range event.WidthBuckets {
		if p.ClickHeatBy[i] == nil {
			p.ClickHeatBy[i] = make(map[int]uint64)
		}
		if p.MoveHeatBy[i] == nil {
			p.MoveHeatBy[i] = make(map[int]uint64)
		}
	}
}

// element returns the counts of the element sel names on p, creating
// them unless p counts maxElements already (then the shared
// otherElement's); nil for clicks the tracker named no element of.
func (p *Page) element(sel string) *Element {
	if sel == "" {
		return nil
	}
	if el := p.Elements[sel]; el != nil {
		return el
	}
	if p.Elements == nil {
		p.Elements = make(map[string]*Element)
	}
	if len(p.Elements) >= maxElements {
		sel = otherElement
		if el := p.Elements[sel]; el != nil {
			return el
		}
	}
	el := &Element{}
	p.Elements[sel] = el
	return el
}

// click is a click remembered for rage detection.
type click struct {
	T    int64  `json:"t"`
	X    int32  `json:"x"`
	Y    int32  `json:"y"`
	Path string `json:"p"`
}

// Conn is an open tracker connection.
type Conn struct {
	Visitor string `json:"v"`
	Session string `json:"s,omitempty"`
	// Node is the ingest node holding the connection; Joined is when, in
	// Unix ms.
	Node   string `json:"n,omitempty"`
	Joined int64  `json:"j,omitempty"`
}

// SessionState is what a site remembers of one session between events.
type SessionState struct {
	LastSeen int64 `json:"lastSeen"`
	// Path is the page of the session's latest event: where it is now.
	Path string `json:"path,omitempty"`
	// Depth is the deepest tenth of each page reached (1–10), by the
	// page's key in Site.Pages (so pages beyond maxPages share one), for
	// at most maxDepthPages pages.
	Depth map[string]uint8 `json:"depth,omitempty"`
	// Clicks are the session's recent clicks, oldest first.
	Clicks []click `json:"clicks,omitempty"`
	// RageStart is the start of the session's ongoing rage burst, 0 when
	// none is ongoing.
	RageStart int64 `json:"rageStart,omitempty"`
	// Conns counts the session's open connections.
	Conns int `json:"conns,omitempty"`
	// Batch is the highest tracker batch seq applied, and Applied has bit
	// i set when batch Batch-1-i was applied too: a tracker re-sends
	// the batches it has no ack for, through any ingest node, and each is
	// counted once (see firstTime).
	Batch   uint64 `json:"batch,omitempty"`
	Applied uint64 `json:"applied,omitempty"`
}

// firstTime reports whether batch seq is new to the session, and marks it
// applied. Seqs more than 64 below the highest count as seen: a tracker
// keeps far fewer batches unacked, and ingest stores a connection's
// batches in order.
func (ss *SessionState) firstTime(seq uint64) bool {
	switch {
	case seq > ss.Batch:
		shift := seq - ss.Batch
		if shift > 64 {
			ss.Applied = 0
		} else { // a shift by 64 leaves 0
			ss.Applied = ss.Applied<<shift | 1<<(shift-1)
		}
		if ss.Batch == 0 {
			ss.Applied = 0 // no batch 0 was applied
		}
		ss.Batch = seq
		return true
	case seq == ss.Batch || ss.Batch-seq > 64:
		return false
	default:
		bit := uint64(1) << (ss.Batch - seq - 1)
		if ss.Applied&bit != 0 {
			return false
		}
		ss.Applied |= bit
		return true
	}
}

// Site is the aggregated state of one site. It is what a snapshot stores, so
// every field that matters after a restart is exported.
type Site struct {
	// Seq is the last stream sequence applied to this site.
	Seq    uint64 `json:"seq"`
	Events uint64 `json:"events"`
	ByKind Kinds  `json:"byKind"`
	// Visitors holds per-visitor activity, bounded by maxVisitors.
	Visitors map[string]*event.VisitorCount `json:"visitors"`
	// Conns maps each open connection to its visitor and session.
	Conns map[string]Conn `json:"conns"`
	// Present counts open connections per visitor.
	Present    map[string]int `json:"present"`
	Arrivals   uint64         `json:"arrivals"`
	Departures uint64         `json:"departures"`
	// Seconds counts events by kind per Unix second, for keepSeconds.
	Seconds map[int64]*Kinds `json:"seconds"`
	// Minutes holds per-minute activity by Unix minute, for keepMinutes.
	Minutes    map[int64]*Minute        `json:"minutes"`
	Pages      map[string]*Page         `json:"pages"`
	Sessions   map[string]*SessionState `json:"sessions"`
	RageClicks uint64                   `json:"rageClicks"`
	RecentRage []event.RageClick        `json:"recentRage"`
	// Version counts published overviews and live panels.
	Version uint64 `json:"version"`

	dirty bool
	// liveEvents and livePresence are the totals the last live or full
	// panel showed: a live panel goes out when they changed.
	liveEvents   uint64
	livePresence uint64
}

func newSite() *Site {
	s := &Site{}
	s.fill()
	return s
}

// fill makes the maps of a new or decoded site usable.
func (s *Site) fill() {
	if s.Visitors == nil {
		s.Visitors = make(map[string]*event.VisitorCount)
	}
	if s.Conns == nil {
		s.Conns = make(map[string]Conn)
	}
	if s.Present == nil {
		s.Present = make(map[string]int)
	}
	if s.Seconds == nil {
		s.Seconds = make(map[int64]*Kinds)
	}
	if s.Minutes == nil {
		s.Minutes = make(map[int64]*Minute)
	}
	if s.Pages == nil {
		s.Pages = make(map[string]*Page)
	}
	for key, p := range s.Pages {
		p.key = key
		if p.Minutes == nil {
			p.Minutes = make(map[int64]*Minute)
		}
		p.fillHeatBy()
		if p.ClickHeat == nil {
			p.ClickHeat = make(map[int]uint64)
		}
		if p.MoveHeat == nil {
			p.MoveHeat = make(map[int]uint64)
		}
	}
	if s.Sessions == nil {
		s.Sessions = make(map[string]*SessionState)
	}
}

func (s *Site) minute(unixMs int64) *Minute { return minuteOf(s.Minutes, unixMs) }

func minuteOf(minutes map[int64]*Minute, unixMs int64) *Minute {
	m := minutes[unixMs/60_000]
	if m == nil {
		m = &Minute{}
		minutes[unixMs/60_000] = m
	}
	return m
}

func (s *Site) page(path string) *Page {
	if path == "" {
		path = "/"
	}
	p := s.Pages[path]
	if p == nil {
		if len(s.Pages) >= maxPages {
			path = otherPage
			if p = s.Pages[path]; p != nil {
				return p
			}
		}
		p = &Page{Minutes: make(map[int64]*Minute), ClickHeat: make(map[int]uint64), MoveHeat: make(map[int]uint64), key: path}
		p.fillHeatBy()
		s.Pages[path] = p
	}
	return p
}

func (s *Site) session(id string, t int64) *SessionState {
	ss := s.Sessions[id]
	if ss == nil {
		if len(s.Sessions) >= maxSessions {
			s.evictSessions()
		}
		ss = &SessionState{}
		s.Sessions[id] = ss
	}
	ss.LastSeen = max(ss.LastSeen, t)
	return ss
}

// evictSessions drops the tenth of the sessions that matter least:
// those without an open connection before those with one (whose re-sent
// batches are still to be recognised), then those seen longest ago, then
// by id, so that a replay evicts the same ones. Dropping a tenth at a
// time makes a site at the bound pay for the sort once per
// maxSessions/10 new sessions, not a scan for each.
func (s *Site) evictSessions() {
	type aged struct {
		id       string
		open     bool
		lastSeen int64
	}
	all := make([]aged, 0, len(s.Sessions))
	for id, ss := range s.Sessions {
		all = append(all, aged{id, ss.Conns > 0, ss.LastSeen})
	}
	slices.SortFunc(all, func(a, b aged) int {
		if a.open != b.open {
			if a.open {
				return 1
			}
			return -1
		}
		return cmp.Or(cmp.Compare(a.lastSeen, b.lastSeen), cmp.Compare(a.id, b.id))
	})
	for _, a := range all[:max(1, len(all)/10)] {
		delete(s.Sessions, a.id)
	}
}

// applyBatch counts the events of b, unless b is a tracker batch already
// applied; it reports whether it did.
func (s *Site) applyBatch(b *event.Batch) bool {
	l := lookups{s: s}
	if b.Session != "" && b.Seq > 0 && !l.session(b.Session, b.Received).firstTime(b.Seq) {
		return false
	}
	for i := range b.Events {
		e := &b.Events[i]
		t := min(e.T, b.Received+futureSlack)
		k := int(e.Kind) % len(Kinds{})
		s.Events++
		s.ByKind[k]++
		l.second(t)[k]++
		l.minute(t).ByKind[k]++

		vc := l.visitor(b.VisitorOf(e))
		vc.Events++
		vc.LastSeen = max(vc.LastSeen, t)

		p := l.page(e.Path)
		p.Events++
		l.pageMinute(t).ByKind[k]++
		if b.Session != "" && e.Path != "" {
			// A session on a new page: a page view ends and one begins.
			ss := l.session(b.Session, t)
			if ss.Path != e.Path {
				if ss.Path != "" {
					minuteOf(s.page(ss.Path).Minutes, t).Departures++
				}
				l.pageMinute(t).Arrivals++
				ss.Path = e.Path
			}
		}
		switch e.Kind {
		case event.KindMove:
			if cell, ok := heatCell(e); ok {
				p.MoveHeat[cell]++
				p.MoveHeatBy[event.WidthBucket(e.VW)][cell]++
			}
		case event.KindClick:
			p.Clicks++
			if cell, ok := heatCell(e); ok {
				p.ClickHeat[cell]++
				p.ClickHeatBy[event.WidthBucket(e.VW)][cell]++
			}
			el := p.element(e.Target)
			if el != nil {
				el.Clicks++
				el.addSpot(e.OX, e.OY)
			}
			if b.Session != "" && s.applyClick(p, l.session(b.Session, t), e, t) && el != nil {
				el.RageClicks++
			}
		case event.KindDeadClick:
			p.DeadClicks++
			if el := p.element(e.Target); el != nil {
				el.DeadClicks++
			}
		case event.KindScroll:
			if b.Session != "" && e.PH > 0 {
				applyScroll(p, l.session(b.Session, t), e)
			}
		}
	}
	s.dirty = true
	return true
}

// lookups finds a site's counters for the events of one batch, remembering
// what it found for the one before: a batch's events mostly share their
// second, minute, visitor, page and session, and a map lookup per counter
// per event cost more than the rest of counting the event. What it
// remembers stays valid for the batch: nothing else adds to or evicts from
// the site's maps meanwhile.
type lookups struct {
	s *Site

	sec    *Kinds
	secKey int64
	min    *Minute
	minKey int64

	vc        *event.VisitorCount
	visitorID string

	p          *Page
	path       string
	pageMin    *Minute
	pageMinKey int64
	ss         *SessionState
	sessionID  string
}

func (l *lookups) second(unixMs int64) *Kinds {
	if key := unixMs / 1000; l.sec == nil || l.secKey != key {
		l.sec, l.secKey = l.s.Seconds[key], key
		if l.sec == nil {
			l.sec = &Kinds{}
			l.s.Seconds[key] = l.sec
		}
	}
	return l.sec
}

func (l *lookups) minute(unixMs int64) *Minute {
	if key := unixMs / 60_000; l.min == nil || l.minKey != key {
		l.min, l.minKey = l.s.minute(unixMs), key
	}
	return l.min
}

func (l *lookups) visitor(id string) *event.VisitorCount {
	if l.vc == nil || l.visitorID != id {
		l.vc, l.visitorID = l.s.Visitors[id], id
		if l.vc == nil {
			l.vc = &event.VisitorCount{Visitor: id}
			l.s.Visitors[id] = l.vc
		}
	}
	return l.vc
}

// page returns the page of path; pageMinute then returns that page's
// minute.
func (l *lookups) page(path string) *Page {
	if l.p == nil || l.path != path {
		l.p, l.path, l.pageMin = l.s.page(path), path, nil
	}
	return l.p
}

func (l *lookups) pageMinute(unixMs int64) *Minute {
	if key := unixMs / 60_000; l.pageMin == nil || l.pageMinKey != key {
		l.pageMin, l.pageMinKey = minuteOf(l.p.Minutes, unixMs), key
	}
	return l.pageMin
}

// session is Site.session for the batch's session.
func (l *lookups) session(id string, t int64) *SessionState {
	if l.ss != nil && l.sessionID == id {
		l.ss.LastSeen = max(l.ss.LastSeen, t) // as Site.session does
		return l.ss
	}
	l.ss, l.sessionID = l.s.session(id, t), id
	return l.ss
}

// topVisitorsOf returns the topVisitors most active visitors, most active
// first (ties by id). It keeps the top sorted as it goes rather than
// sorting every visitor: a site has thousands, and the overview is built
// every tick.
func topVisitorsOf(visitors map[string]*event.VisitorCount) []event.VisitorCount {
	before := func(a, b *event.VisitorCount) bool {
		return a.Events > b.Events || a.Events == b.Events && a.Visitor < b.Visitor
	}
	top := make([]event.VisitorCount, 0, min(len(visitors), topVisitors))
	for _, v := range visitors {
		if len(top) == topVisitors && !before(v, &top[len(top)-1]) {
			continue
		}
		i := len(top)
		if i < topVisitors {
			top = append(top, event.VisitorCount{})
		} else {
			i-- // the last one drops out
		}
		for ; i > 0 && before(v, &top[i-1]); i-- {
			top[i] = top[i-1]
		}
		top[i] = *v
	}
	return top
}

// heatCell returns the heatmap cell of a move or click, or false when the
// event has no viewport width to normalise by.
func heatCell(e *event.Event) (int, bool) {
	if e.VW <= 0 || e.X < 0 || e.Y < 0 {
		return 0, false
	}
	col := min(int(int64(e.X)*event.HeatCols/int64(e.VW)), event.HeatCols-1)
	row := min(int(int64(e.Y)*event.HeatCols/int64(e.VW)), event.HeatRows-1)
	return row*event.HeatCols + col, true
}

// applyScroll records the deepest tenth of the page a page view reached.
func applyScroll(p *Page, ss *SessionState, e *event.Event) {
	decile := uint8(min(10, max(1, (int64(e.Y)*10+int64(e.PH)-1)/int64(e.PH))))
	if ss.Depth == nil {
		ss.Depth = make(map[string]uint8)
	}
	prev, seen := ss.Depth[p.key]
	if !seen {
		p.PageViews++
		if len(ss.Depth) >= maxDepthPages {
			// The first key, not an arbitrary one: a replay of the
			// stream must forget the same.
			delete(ss.Depth, slices.Min(slices.Collect(maps.Keys(ss.Depth))))
		}
	}
	for d := prev + 1; d <= decile; d++ {
		p.ScrollReached[d-1]++
	}
	ss.Depth[p.key] = max(prev, decile)
}

// burstSize returns how many clicks form a burst ending with c: c and the
// clicks of history (oldest first) on c's page within rageWindow of c and
// rageRadius of it.
func burstSize(history []click, c click) int {
	n := 1
	for i := len(history) - 1; i >= 0; i-- {
		h := history[i]
		if c.T-h.T > rageWindow {
			break
		}
		dx, dy := int64(c.X-h.X), int64(c.Y-h.Y)
		if h.Path == c.Path && dx*dx+dy*dy <= rageRadius*rageRadius {
			n++
		}
	}
	return n
}

// applyClick detects rage clicks: a burst is counted once when it reaches
// rageMinClicks, and its record grows while it goes on. It reports
// whether this click made a burst a rage click.
func (s *Site) applyClick(p *Page, ss *SessionState, e *event.Event, t int64) (rage bool) {
	c := click{T: t, X: e.X, Y: e.Y, Path: e.Path}
	n := burstSize(ss.Clicks, c)
	switch {
	case n < rageMinClicks:
		ss.RageStart = 0
	case ss.RageStart != 0:
		for i := range s.RecentRage {
			if r := &s.RecentRage[i]; r.T == ss.RageStart && r.Path == e.Path {
				r.Clicks = n
				break
			}
		}
	default:
		rage = true
		s.RageClicks++
		p.RageClicks++
		start := t
		for _, h := range ss.Clicks {
			if t-h.T <= rageWindow {
				start = min(start, h.T)
			}
		}
		ss.RageStart = start
		s.RecentRage = append([]event.RageClick{{Path: e.Path, Target: e.Target, X: e.X, Y: e.Y, Clicks: n, T: start}}, s.RecentRage...)
		s.RecentRage = s.RecentRage[:min(len(s.RecentRage), recentRage)]
	}
	// Keep only what a burst can still use.
	keep := ss.Clicks[:0]
	for _, h := range ss.Clicks {
		if t-h.T <= rageWindow {
			keep = append(keep, h)
		}
	}
	ss.Clicks = append(keep, c)
	if len(ss.Clicks) > 20 {
		ss.Clicks = ss.Clicks[len(ss.Clicks)-20:]
	}
	return rage
}

// applyPresence tracks a join or leave. A visitor arrives with its first
// open connection and departs with its last.
func (s *Site) applyPresence(p *event.Presence) {
	switch p.Kind {
	case event.Join:
		if _, ok := s.Conns[p.Conn]; ok {
			return
		}
		s.Conns[p.Conn] = Conn{Visitor: p.Visitor, Session: p.Session, Node: p.Node, Joined: p.Time}
		if p.Session != "" {
			s.session(p.Session, p.Time).Conns++
		}
		s.Present[p.Visitor]++
		if s.Present[p.Visitor] == 1 {
			s.Arrivals++
			s.minute(p.Time).Arrivals++
		}
	case event.Leave:
		c, ok := s.Conns[p.Conn]
		if !ok {
			return
		}
		v := c.Visitor
		delete(s.Conns, p.Conn)
		// The session's last connection closing ends its page view.
		if ss := s.Sessions[c.Session]; ss != nil {
			if ss.Conns--; ss.Conns <= 0 && ss.Path != "" {
				minuteOf(s.page(ss.Path).Minutes, p.Time).Departures++
				ss.Path = ""
			}
		}
		s.Present[v]--
		if s.Present[v] <= 0 {
			delete(s.Present, v)
			s.Departures++
			s.minute(p.Time).Departures++
		}
	default:
		return
	}
	s.dirty = true
}

// prune drops what has left every window: seconds, minutes, idle sessions
// and, beyond maxVisitors, the visitors seen longest ago that are not
// present.
func (s *Site) prune(now time.Time, maxVisitors int) {
	for sec := range s.Seconds {
		if sec < now.Unix()-keepSeconds {
			delete(s.Seconds, sec)
		}
	}
	for m := range s.Minutes {
		if m < now.Unix()/60-keepMinutes {
			delete(s.Minutes, m)
		}
	}
	for _, p := range s.Pages {
		for m := range p.Minutes {
			if m < now.Unix()/60-hourWindow {
				delete(p.Minutes, m)
			}
		}
	}
	idle := now.Add(-sessionIdle).UnixMilli()
	for id, ss := range s.Sessions {
		if ss.LastSeen < idle && ss.Conns <= 0 {
			delete(s.Sessions, id)
		}
	}
	if len(s.Visitors) <= maxVisitors {
		return
	}
	all := make([]*event.VisitorCount, 0, len(s.Visitors))
	for _, v := range s.Visitors {
		all = append(all, v)
	}
	slices.SortFunc(all, func(a, b *event.VisitorCount) int { return cmp.Compare(a.LastSeen, b.LastSeen) })
	// Evict down to 90% so that pruning does not run on every tick.
	excess := len(all) - maxVisitors*9/10
	for _, v := range all {
		if excess == 0 {
			break
		}
		if s.Present[v.Visitor] > 0 {
			continue
		}
		delete(s.Visitors, v.Visitor)
		excess--
	}
}

func kindsMap(k *Kinds) map[string]uint64 {
	m := make(map[string]uint64)
	for i, n := range k {
		if n > 0 {
			m[event.Kind(i).String()] = n
		}
	}
	return m
}

// overview builds the site's overview panel as of now.
func (s *Site) overview(name string, now time.Time) event.Overview {
	ov := event.Overview{
		Site:            name,
		Version:         s.Version,
		Events:          s.Events,
		ByKind:          kindsMap(&s.ByKind),
		Visitors:        len(s.Present),
		Arrivals:        s.Arrivals,
		Departures:      s.Departures,
		PerSecond:       make([]event.Point, chartWindow),
		PerSecondByKind: make(map[string][]uint64),
		Day:             make([]event.Point, keepMinutes/dayBucket),
		RageClicks:      s.RageClicks,
		RecentRage:      slices.Clone(s.RecentRage),
		Updated:         now.UnixMilli(),
	}
	// The per-second chart ends at the last complete second.
	last := now.Unix() - 1
	for i := range ov.PerSecond {
		sec := last - chartWindow + 1 + int64(i)
		ov.PerSecond[i] = event.Point{T: sec * 1000}
		k := s.Seconds[sec]
		if k == nil {
			continue
		}
		ov.PerSecond[i].N = k.total()
		for kind, n := range k {
			if n == 0 {
				continue
			}
			name := event.Kind(kind).String()
			if ov.PerSecondByKind[name] == nil {
				ov.PerSecondByKind[name] = make([]uint64, chartWindow)
			}
			ov.PerSecondByKind[name][i] = n
		}
	}
	// The hour and day charts end with the current minute.
	thisMinute := now.Unix() / 60
	ov.PerMinute = hourSeries(s.Minutes, thisMinute)
	firstBucket := thisMinute/dayBucket - int64(len(ov.Day)) + 1
	for i := range ov.Day {
		ov.Day[i].T = (firstBucket + int64(i)) * dayBucket * 60_000
	}
	for m, mm := range s.Minutes {
		if i := m/dayBucket - firstBucket; i >= 0 && i < int64(len(ov.Day)) {
			ov.Day[i].N += mm.ByKind.total()
		}
	}

	ov.TopVisitors = topVisitorsOf(s.Visitors)

	paths := s.busiestPages()
	// Visitors on a page now: present visitors whose session's latest
	// event was on it.
	onPage := make(map[string]map[string]bool)
	for _, c := range s.Conns {
		if ss := s.Sessions[c.Session]; ss != nil && ss.Path != "" {
			if onPage[ss.Path] == nil {
				onPage[ss.Path] = make(map[string]bool)
			}
			onPage[ss.Path][c.Visitor] = true
		}
	}
	for _, path := range paths[:min(len(paths), topPages)] {
		p := s.Pages[path]
		ov.Pages = append(ov.Pages, event.PageStats{
			Path: path, Visitors: len(onPage[path]), Events: p.Events, Clicks: p.Clicks, RageClicks: p.RageClicks,
			DeadClicks: p.DeadClicks, Elements: topElementsOf(p.Elements),
			ScrollReached: p.ScrollReached, PageViews: p.PageViews,
			ClickHeat: heatCells(p.ClickHeat), MoveHeat: heatCells(p.MoveHeat),
			PerMinute: hourSeries(p.Minutes, thisMinute),
		})
	}
	return ov
}

// busiestPages returns the site's page keys, most events first.
func (s *Site) busiestPages() []string {
	paths := slices.Collect(maps.Keys(s.Pages))
	slices.SortFunc(paths, func(a, b string) int {
		if c := cmp.Compare(s.Pages[b].Events, s.Pages[a].Events); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	return paths
}

// liveChanged reports whether the site's totals moved since the last
// panel (live or full), and marks them shown.
func (s *Site) liveChanged() bool {
	presence := s.Arrivals + s.Departures
	if s.Events == s.liveEvents && presence == s.livePresence {
		return false
	}
	s.liveEvents, s.livePresence = s.Events, presence
	return true
}

// live returns the site's live panel at now.
func (s *Site) live(site string, now time.Time) event.LivePanel {
	lp := event.LivePanel{
		Site: site, Version: s.Version, Events: s.Events, ByKind: kindsMap(&s.ByKind),
		Visitors: len(s.Present), Arrivals: s.Arrivals, Departures: s.Departures, RageClicks: s.RageClicks,
		Second: now.Unix() * 1000, Updated: now.UnixMilli(),
	}
	if k := s.Seconds[now.Unix()]; k != nil {
		lp.SecondByKind = kindsMap(k)
	}
	return lp
}

// heat returns the site's heat panel at now: its heatPages busiest pages
// with their heatmaps by viewport width, each at most heatPanelCells
// cells (the hottest), so that the panel stays far below NATS's message
// limit.
func (s *Site) heat(site string, now time.Time) event.HeatPanel {
	hp := event.HeatPanel{Site: site, Version: s.Version, Updated: now.UnixMilli()}
	paths := s.busiestPages()
	for _, path := range paths[:min(len(paths), heatPages)] {
		p := s.Pages[path]
		ph := event.PageHeat{Path: path, ScrollReached: p.ScrollReached, PageViews: p.PageViews, Elements: topElementsOf(p.Elements)}
		for i := range ph.Elements {
			if el := p.Elements[ph.Elements[i].Selector]; el != nil && len(el.Spots) > 0 {
				ph.Elements[i].Spots = spotCells(el.Spots)
			}
		}
		for i := range event.WidthBuckets {
			clicks, moves := heatCells(p.ClickHeatBy[i]), heatCells(p.MoveHeatBy[i])
			ph.Widths[i] = event.WidthHeat{Clicks: clicks[:min(len(clicks), heatPanelCells)], Moves: moves[:min(len(moves), heatPanelCells)]}
		}
		hp.Pages = append(hp.Pages, ph)
	}
	return hp
}

// topElementsOf lists the topElements most clicked elements, the most
// dead clicks first among equals, then by selector.
func topElementsOf(elements map[string]*Element) []event.ElementStats {
	out := make([]event.ElementStats, 0, len(elements))
	for sel, el := range elements {
		out = append(out, event.ElementStats{Selector: sel, Clicks: el.Clicks, RageClicks: el.RageClicks, DeadClicks: el.DeadClicks})
	}
	slices.SortFunc(out, func(a, b event.ElementStats) int {
		return cmp.Or(cmp.Compare(b.Clicks, a.Clicks), cmp.Compare(b.DeadClicks, a.DeadClicks), cmp.Compare(a.Selector, b.Selector))
	})
	return out[:min(len(out), topElements)]
}

// hourSeries is the last hour of minutes, ending with thisMinute, zeros
// included.
func hourSeries(minutes map[int64]*Minute, thisMinute int64) []event.MinutePoint {
	out := make([]event.MinutePoint, hourWindow)
	for i := range out {
		m := thisMinute - hourWindow + 1 + int64(i)
		out[i] = event.MinutePoint{T: m * 60_000}
		if mm := minutes[m]; mm != nil {
			out[i].Events, out[i].ByKind, out[i].Arrivals, out[i].Departures = mm.ByKind.total(), kindsMap(&mm.ByKind), mm.Arrivals, mm.Departures
		}
	}
	return out
}

// spotCells lists an element's click spots, most clicked first.
func spotCells(spots map[int]uint64) []event.HeatCell {
	cells := make([]event.HeatCell, 0, len(spots))
	for i, n := range spots {
		cells = append(cells, event.HeatCell{Col: i % spotGrid, Row: i / spotGrid, N: n})
	}
	slices.SortFunc(cells, func(a, b event.HeatCell) int {
		return cmp.Or(cmp.Compare(b.N, a.N), cmp.Compare(a.Row*spotGrid+a.Col, b.Row*spotGrid+b.Col))
	})
	return cells
}

// heatCells lists a heatmap's hottest cells, hottest first.
func heatCells(m map[int]uint64) []event.HeatCell {
	cells := make([]event.HeatCell, 0, len(m))
	for i, n := range m {
		cells = append(cells, event.HeatCell{Col: i % event.HeatCols, Row: i / event.HeatCols, N: n})
	}
	slices.SortFunc(cells, func(a, b event.HeatCell) int {
		if c := cmp.Compare(b.N, a.N); c != 0 {
			return c
		}
		return cmp.Compare(a.Row*event.HeatCols+a.Col, b.Row*event.HeatCols+b.Col)
	})
	return cells[:min(len(cells), maxHeatCells)]
}

// activeWithin reports whether the site's per-second chart holds any event,
// so the chart must slide even without new events.
func (s *Site) activeWithin(now time.Time) bool {
	for sec := now.Unix() - chartWindow - 1; sec <= now.Unix(); sec++ {
		if s.Seconds[sec] != nil {
			return true
		}
	}
	return false
}
