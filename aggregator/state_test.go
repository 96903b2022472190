package aggregator

import (
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/pulse-analytics/pulse/event"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestPresence(t *testing.T) {
	type step struct {
		kind    event.PresenceKind
		conn    string
		visitor string
	}
	tests := []struct {
		name                 string
		steps                []step
		visitors             int
		arrivals, departures uint64
	}{
		{"join", []step{{event.Join, "c1", "ann"}}, 1, 1, 0},
		{"join and leave", []step{{event.Join, "c1", "ann"}, {event.Leave, "c1", ""}}, 0, 1, 1},
		{"two tabs count once", []step{{event.Join, "c1", "ann"}, {event.Join, "c2", "ann"}}, 1, 1, 0},
		{"one tab of two closes", []step{{event.Join, "c1", "ann"}, {event.Join, "c2", "ann"}, {event.Leave, "c1", ""}}, 1, 1, 0},
		{"reconnect overtakes leave", []step{{event.Join, "c1", "ann"}, {event.Join, "c2", "ann"}, {event.Leave, "c1", ""}, {event.Leave, "c2", ""}}, 0, 1, 1},
		{"duplicate join", []step{{event.Join, "c1", "ann"}, {event.Join, "c1", "ann"}, {event.Leave, "c1", ""}}, 0, 1, 1},
		{"leave of unknown conn", []step{{event.Leave, "c9", ""}}, 0, 0, 0},
		{"two visitors", []step{{event.Join, "c1", "ann"}, {event.Join, "c2", "bob"}, {event.Leave, "c2", ""}}, 1, 2, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSite()
			for _, st := range tt.steps {
				s.applyPresence(&event.Presence{Kind: st.kind, Conn: st.conn, Visitor: st.visitor})
			}
			ov := s.overview("demo", time.Unix(1000, 0))
			if ov.Visitors != tt.visitors || ov.Arrivals != tt.arrivals || ov.Departures != tt.departures {
				t.Errorf("visitors %d, arrivals %d, departures %d; want %d, %d, %d",
					ov.Visitors, ov.Arrivals, ov.Departures, tt.visitors, tt.arrivals, tt.departures)
			}
		})
	}
}

func TestBurstSize(t *testing.T) {
	at := func(t int64, x, y int32) click { return click{T: t, X: x, Y: y, Path: "/"} }
	tests := []struct {
		name    string
		history []click
		c       click
		want    int
	}{
		{"first click", nil, at(1000, 10, 10), 1},
		{"three quick clicks on one spot", []click{at(1000, 10, 10), at(1200, 12, 9)}, at(1400, 11, 11), 3},
		{"too slow", []click{at(0, 10, 10), at(900, 10, 10)}, at(1950, 10, 10), 1},
		{"too far apart", []click{at(1000, 10, 10), at(1100, 100, 10)}, at(1200, 10, 10), 2},
		{"just inside the radius", []click{at(1000, 0, 0), at(1100, 18, 24)}, at(1200, 0, 0), 3},
		{"another page", []click{{T: 1000, Path: "/a"}, {T: 1100, Path: "/a"}}, click{T: 1200, Path: "/b"}, 1},
		{"window edge", []click{at(200, 5, 5), at(1000, 5, 5)}, at(1200, 5, 5), 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := burstSize(tt.history, tt.c); got != tt.want {
				t.Errorf("burstSize = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestRageClicksCountOncePerBurst(t *testing.T) {
	s := newSite()
	clicks := []int64{1000, 1100, 1200, 1300, 1400, 5000, 5100, 9000, 9050, 9100}
	for _, at := range clicks {
		s.applyBatch(&event.Batch{Session: "s1", Received: at, Events: []event.Event{{Kind: event.KindClick, T: at, X: 50, Y: 50, VW: 1000, Path: "/buy", Target: "button#pay"}}})
	}
	if s.RageClicks != 2 || s.Pages["/buy"].RageClicks != 2 {
		t.Fatalf("rage clicks %d, want 2 (bursts of 5 and 3; 2 clicks are not rage)", s.RageClicks)
	}
	if r := s.RecentRage; len(r) != 2 || r[0].T != 9000 || r[0].Clicks != 3 || r[1].T != 1000 || r[1].Clicks != 5 || r[1].Target != "button#pay" {
		t.Errorf("recent rage %+v", r)
	}
}

func TestScrollDepth(t *testing.T) {
	s := newSite()
	scroll := func(session string, y, ph int32) {
		s.applyBatch(&event.Batch{Session: session, Received: 1, Events: []event.Event{{Kind: event.KindScroll, T: 1, Y: y, PH: ph, Path: "/post"}}})
	}
	scroll("a", 800, 4000)  // 20%
	scroll("a", 2100, 4000) // 53% → 60%
	scroll("a", 1000, 4000) // back up: nothing new
	scroll("b", 4000, 4000) // 100%
	scroll("c", 100, 0)     // no page height: ignored
	p := s.Pages["/post"]
	want := [10]uint64{2, 2, 2, 2, 2, 2, 1, 1, 1, 1}
	if p.ScrollReached != want || p.PageViews != 2 {
		t.Errorf("reached %v, views %d; want %v, 2", p.ScrollReached, p.PageViews, want)
	}
}

// TestOverviewGolden builds a site from fixed batches and compares its
// overview (windows, heatmaps, scroll depth, rage and dead clicks,
// elements) with
// testdata/overview.golden; go test -update rewrites it.
// goldenNow is the time goldenSite's events lead up to.
var goldenNow = time.UnixMilli(1_700_000_060_500)

// goldenSite is a site with a little of everything a site counts: moves,
// clicks and a rage burst, a dead click, scroll depth, visitors who came
// and went, and events minutes and a day old. The golden files of the
// overview and of the snapshot are made from it.
func goldenSite() *Site {
	now := goldenNow
	s := newSite()
	base := now.UnixMilli() - 10_000
	batches := []event.Batch{
		{Site: "demo", Session: "s1", Visitor: "ann", Received: base + 1000, Events: []event.Event{
			{Kind: event.KindMove, T: base, X: 100, Y: 50, VW: 1000, VH: 800, Path: "/"},
			{Kind: event.KindMove, T: base + 100, X: 110, Y: 55, VW: 1000, VH: 800, Path: "/"},
			{Kind: event.KindClick, T: base + 900, X: 500, Y: 400, VW: 1000, VH: 800, OX: 500, OY: 250, Path: "/", Target: "a.buy"},
			{Kind: event.KindClick, T: base + 950, X: 505, Y: 402, VW: 1000, VH: 800, OX: 590, OY: 299, Path: "/", Target: "a.buy"},
			{Kind: event.KindClick, T: base + 990, X: 502, Y: 399, VW: 1000, VH: 800, Path: "/", Target: "a.buy"},
		}},
		// A phone: half the width, so the same spot of a responsive page
		// lands in the same cell.
		{Site: "demo", Session: "s2", Visitor: "bob", Received: base + 2000, Events: []event.Event{
			{Kind: event.KindClick, T: base + 1500, X: 250, Y: 200, VW: 500, VH: 900, Path: "/"},
			{Kind: event.KindScroll, T: base + 1600, Y: 1800, PH: 3600, Path: "/"},
			// A click on a button that did nothing, reported dead by the
			// tracker 2.5 s later.
			{Kind: event.KindClick, T: base + 1700, X: 100, Y: 300, VW: 500, VH: 900, Path: "/", Target: "button#noop"},
			{Kind: event.KindDeadClick, T: base + 1700, X: 100, Y: 300, VW: 500, VH: 900, Path: "/", Target: "button#noop"},
		}},
		{Site: "demo", Received: base + 5000, Events: []event.Event{
			{Kind: event.KindMove, T: base + 4000, Visitor: "user1"},
			{Kind: event.KindMove, T: base + 4000, Visitor: "user2"},
			{Kind: event.KindMove, T: base + 4100, Visitor: "user1", Path: "/pricing", X: 10, Y: 10, VW: 800},
		}},
		// An event claiming a time far ahead of its batch is placed at the
		// batch's time plus the allowed slack.
		{Site: "demo", Session: "s3", Received: base + 6000, Events: []event.Event{{Kind: event.KindVisibility, T: base + 999_999}}},
		// Minutes ago: in the hour and day windows, not the minute's.
		{Site: "demo", Session: "s4", Received: base - 300_000, Events: []event.Event{{Kind: event.KindLeave, T: base - 300_000}}},
		// Yesterday: counted, but in no window.
		{Site: "demo", Session: "s5", Received: base - 25*3600_000, Events: []event.Event{{Kind: event.KindResize, T: base - 25*3600_000}}},
	}
	for i := range batches {
		s.applyBatch(&batches[i])
	}
	s.applyPresence(&event.Presence{Kind: event.Join, Conn: "c1", Session: "s1", Visitor: "ann", Time: base})
	s.applyPresence(&event.Presence{Kind: event.Join, Conn: "c2", Visitor: "bob", Time: base - 120_000})
	s.applyPresence(&event.Presence{Kind: event.Leave, Conn: "c2", Time: base - 60_000})
	s.prune(now, 100)
	s.Seq = 1234 // as if the stream's 1234th message were the last
	return s
}

func TestOverviewGolden(t *testing.T) {
	now := goldenNow
	s := goldenSite()
	got, err := json.MarshalIndent(s.overview("demo", now), "", " ")
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "overview.golden")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("overview differs from %s:\n%s", golden, got)
	}
}

func TestPruneBounds(t *testing.T) {
	s := newSite()
	for i, v := range []string{"a", "b", "c", "d", "e"} {
		s.applyBatch(&event.Batch{Session: v, Received: int64(i), Events: []event.Event{{Kind: event.KindClick, T: int64(i * 1000), Visitor: v}}})
	}
	s.applyPresence(&event.Presence{Kind: event.Join, Conn: "c", Visitor: "a"}) // oldest, but present
	s.prune(time.UnixMilli(5000), 4)
	// Down to 90% of 4 = 3: drop b and c (oldest not present), keep a.
	for v, want := range map[string]bool{"a": true, "b": false, "c": false, "d": true, "e": true} {
		if _, ok := s.Visitors[v]; ok != want {
			t.Errorf("visitor %s kept = %v, want %v", v, ok, want)
		}
	}
	later := time.Unix(keepMinutes*60+3600, 0)
	s.prune(later, 100)
	if len(s.Seconds) != 0 || len(s.Minutes) != 0 || len(s.Sessions) != 0 {
		t.Errorf("after a day: %d seconds, %d minutes, %d sessions kept", len(s.Seconds), len(s.Minutes), len(s.Sessions))
	}
	for i := range maxPages + 10 {
		s.applyBatch(&event.Batch{Events: []event.Event{{Kind: event.KindMove, Path: "/p" + string(rune('a'+i))}}})
	}
	if len(s.Pages) > maxPages+1 || s.Pages[otherPage] == nil {
		t.Errorf("%d pages kept, want at most %d plus %q", len(s.Pages), maxPages, otherPage)
	}
}

// TestPageViews: a session moving from page to page ends one page view and
// starts the next; its last connection closing ends the last one.
func TestPageViews(t *testing.T) {
	s := newSite()
	at := int64(1_700_000_000_000)
	s.applyPresence(&event.Presence{Kind: event.Join, Conn: "c1", Session: "s1", Visitor: "ann", Time: at})
	s.applyPresence(&event.Presence{Kind: event.Join, Conn: "c2", Session: "s1", Visitor: "ann", Time: at}) // a reconnect overlapping
	for i, path := range []string{"/a", "/a", "/b", "/a"} {
		s.applyBatch(&event.Batch{Session: "s1", Received: at, Events: []event.Event{{Kind: event.KindMove, T: at + int64(i), Path: path}}})
	}
	s.applyPresence(&event.Presence{Kind: event.Leave, Conn: "c1", Time: at})
	views := func(path string) (arrivals, departures uint64) {
		m := s.Pages[path].Minutes[at/60_000]
		return m.Arrivals, m.Departures
	}
	if a, d := views("/a"); a != 2 || d != 1 {
		t.Errorf("/a: %d arrivals, %d departures; want 2, 1 (the session is still there)", a, d)
	}
	s.applyPresence(&event.Presence{Kind: event.Leave, Conn: "c2", Time: at})
	if a, d := views("/a"); a != 2 || d != 2 {
		t.Errorf("/a after leaving: %d arrivals, %d departures; want 2, 2", a, d)
	}
	if a, d := views("/b"); a != 1 || d != 1 {
		t.Errorf("/b: %d arrivals, %d departures; want 1, 1", a, d)
	}
	ov := s.overview("demo", time.UnixMilli(at))
	last := ov.Pages[0].PerMinute[len(ov.Pages[0].PerMinute)-1]
	if ov.Pages[0].Path != "/a" || last.Events != 3 || last.ByKind["move"] != 3 {
		t.Errorf("page series %+v", ov.Pages[0])
	}
}

// TestFirstTime: each tracker batch counts once, whatever the order the
// re-sent copies arrive in, within the window of 64.
// TestSessionsBounded: at maxSessions a new session makes room by
// dropping a tenth, connection-less and least recently seen first, and
// the newcomer and sessions with an open connection stay.
func TestSessionsBounded(t *testing.T) {
	s := newSite()
	const base = 1_700_000_000_000
	for i := range maxSessions {
		s.session(fmt.Sprintf("s%05d", i), base+int64(i))
	}
	// The oldest session has a connection open: it outlives newer ones.
	s.Sessions["s00000"].Conns = 1
	s.session("new", base+maxSessions)
	if got, want := len(s.Sessions), maxSessions-maxSessions/10+1; got != want {
		t.Fatalf("%d sessions after one over the bound, want %d", got, want)
	}
	for _, tc := range []struct {
		id   string
		kept bool
	}{
		{"new", true},
		{"s00000", true},  // open connection
		{"s00001", false}, // oldest without one
		{fmt.Sprintf("s%05d", maxSessions/10), false},  // the tenth's last
		{fmt.Sprintf("s%05d", maxSessions/10+1), true}, // the first kept
		{fmt.Sprintf("s%05d", maxSessions-1), true},    // newest before
	} {
		if _, ok := s.Sessions[tc.id]; ok != tc.kept {
			t.Errorf("session %s kept: %v, want %v", tc.id, ok, tc.kept)
		}
	}
	// The next new sessions need no eviction until the bound again.
	for i := range maxSessions/10 - 1 {
		s.session(fmt.Sprintf("more%d", i), base+maxSessions+1)
	}
	if len(s.Sessions) != maxSessions {
		t.Fatalf("%d sessions, want %d", len(s.Sessions), maxSessions)
	}
}

func TestFirstTime(t *testing.T) {
	for _, tc := range []struct {
		name string
		seqs []uint64
		want []bool
	}{
		{"in order", []uint64{1, 2, 3}, []bool{true, true, true}},
		{"re-sent after the ack was lost", []uint64{1, 2, 3, 2, 3, 4}, []bool{true, true, true, false, false, true}},
		{"a gap filled later", []uint64{1, 3, 2, 2, 3}, []bool{true, true, true, false, false}},
		{"first batch not 1", []uint64{5, 4, 5, 1}, []bool{true, true, false, true}},
		{"64 back is in the window", []uint64{1, 65, 1, 2, 2}, []bool{true, true, false, true, false}},
		{"a jump of 64 keeps the old highest", []uint64{10, 74, 10, 11}, []bool{true, true, false, true}},
		{"beyond the window counts as seen", []uint64{1, 100, 35, 36}, []bool{true, true, false, true}},
		{"a jump past the window forgets", []uint64{1, 2, 200, 136, 135}, []bool{true, true, true, true, false}},
	} {
		var ss SessionState
		for i, seq := range tc.seqs {
			if got := ss.firstTime(seq); got != tc.want[i] {
				t.Errorf("%s: batch %d (#%d): firstTime %v, want %v", tc.name, seq, i, got, tc.want[i])
			}
		}
	}
}

// TestBatchCountsAsItsEvents checks that applyBatch, which remembers its
// lookups from event to event, counts a batch as it counts the same events
// applied one batch each: across seconds, minutes, pages, visitors,
// clicks and scrolls.
func TestBatchCountsAsItsEvents(t *testing.T) {
	const received = 1_700_000_000_000
	kinds := []event.Kind{event.KindMove, event.KindClick, event.KindScroll, event.KindMove, event.KindClick}
	paths := []string{"/", "/a", "/a", "/b", "", "/a"}
	visitors := []string{"", "", "v2", "v2", ""}
	var events []event.Event
	for i := range 97 {
		events = append(events, event.Event{
			Kind: kinds[i%len(kinds)], T: received - 150_000 + int64(i)*1_700,
			X: int32(i * 37 % 1280), Y: int32(i * 53 % 4000), VW: 1280, VH: 800, PH: 4000,
			Path: paths[i%len(paths)], Visitor: visitors[i%len(visitors)],
		})
	}
	whole, byEvent := newSite(), newSite()
	if !whole.applyBatch(&event.Batch{Site: "demo", Session: "s1", Visitor: "v1", Received: received, Events: events}) {
		t.Fatal("batch not applied")
	}
	for i := range events {
		byEvent.applyBatch(&event.Batch{Site: "demo", Session: "s1", Visitor: "v1", Received: received, Events: events[i : i+1]})
	}
	if !reflect.DeepEqual(whole, byEvent) {
		got, _ := json.Marshal(whole)
		want, _ := json.Marshal(byEvent)
		t.Errorf("batch counted as\n%s\nevents one by one as\n%s", got, want)
	}
}

func TestTopVisitorsOf(t *testing.T) {
	for _, n := range []int{0, 1, topVisitors - 1, topVisitors, topVisitors + 1, 500} {
		visitors := make(map[string]*event.VisitorCount)
		var all []event.VisitorCount
		for i := range n {
			v := event.VisitorCount{Visitor: fmt.Sprintf("v%03d", i), Events: uint64(i * 7919 % 13), LastSeen: int64(i)}
			visitors[v.Visitor] = &v
			all = append(all, v)
		}
		slices.SortFunc(all, func(a, b event.VisitorCount) int {
			return cmp.Or(cmp.Compare(b.Events, a.Events), cmp.Compare(a.Visitor, b.Visitor))
		})
		want := all[:min(n, topVisitors)]
		if got := topVisitorsOf(visitors); !slices.Equal(got, want) {
			t.Errorf("%d visitors: top %v, want %v", n, got, want)
		}
	}
}

// TestScrollOnEndlessPathsIsBounded: sessions that scroll on a new path
// with every event (the attack: about 280,000 events from 50
// trackers) keep a bounded map of pages each, and the site holds a
// bounded amount.
func TestScrollOnEndlessPathsIsBounded(t *testing.T) {
	s := newSite()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const sessions, perSession = 50, 5600
	events := make([]event.Event, 100)
	for sess := range sessions {
		id := fmt.Sprintf("session-%02d", sess)
		for seq := range perSession / len(events) {
			for i := range events {
				n := seq*len(events) + i
				events[i] = event.Event{Kind: event.KindScroll, T: 1, Y: 100, PH: 1000, Path: fmt.Sprintf("/page/%d/%d", sess, n)}
			}
			s.applyBatch(&event.Batch{Session: id, Seq: uint64(seq + 1), Received: 1, Events: events})
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	for id, ss := range s.Sessions {
		if len(ss.Depth) > maxDepthPages {
			t.Fatalf("session %s remembers %d pages, want at most %d", id, len(ss.Depth), maxDepthPages)
		}
	}
	if len(s.Pages) > maxPages+1 {
		t.Errorf("%d pages, want at most %d", len(s.Pages), maxPages+1)
	}
	if s.Events != sessions*perSession {
		t.Errorf("counted %d events, want %d", s.Events, sessions*perSession)
	}
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 4<<20 {
		t.Errorf("the site grew by %d bytes, want a few hundred KB", grown)
	}
}

// TestElementsPerPageAreBounded: clicks on ever new selectors grow a
// page's element counts only to maxElements; further ones share one row.
func TestElementsPerPageAreBounded(t *testing.T) {
	s := newSite()
	for i := range 3 * maxElements {
		s.applyBatch(&event.Batch{Site: "demo", Received: 1000, Events: []event.Event{
			{Kind: event.KindClick, T: 1000, Path: "/", Target: fmt.Sprintf("div.n%d", i)},
			{Kind: event.KindDeadClick, T: 1000, Path: "/", Target: fmt.Sprintf("div.n%d", i)},
		}})
	}
	p := s.Pages["/"]
	if len(p.Elements) != maxElements+1 {
		t.Fatalf("%d elements counted, want %d and the other elements' row", len(p.Elements), maxElements)
	}
	other := p.Elements[otherElement]
	if other == nil || other.Clicks != 2*maxElements || other.DeadClicks != other.Clicks {
		t.Errorf("the other elements: %+v, want %d clicks, all dead", other, 2*maxElements)
	}
	if p.DeadClicks != 3*maxElements {
		t.Errorf("page's dead clicks %d, want %d", p.DeadClicks, 3*maxElements)
	}
}

// TestHeatByViewportWidth: the heat panel splits each page's heatmaps by
// the kind of screen, and stays bounded.
func TestHeatByViewportWidth(t *testing.T) {
	hp := goldenSite().heat("demo", goldenNow)
	if len(hp.Pages) != 2 || hp.Pages[0].Path != "/" {
		t.Fatalf("pages %+v", hp.Pages)
	}
	sum := func(cells []event.HeatCell) (n uint64) {
		for _, c := range cells {
			n += c.N
		}
		return n
	}
	w := hp.Pages[0].Widths
	// bob's phone (500 px) clicked twice, ann's 1000 px window thrice.
	if sum(w[event.WidthPhone].Clicks) != 2 || sum(w[event.WidthTablet].Clicks) != 3 || sum(w[event.WidthDesktop].Clicks) != 0 {
		t.Errorf("clicks by width: %+v", w)
	}
	if sum(w[event.WidthTablet].Moves) != 2 || len(hp.Pages[0].Elements) == 0 {
		t.Errorf("moves by width %+v, elements %+v", w, hp.Pages[0].Elements)
	}
	// Two of a.buy's three clicks say where on it they fell: both in the
	// cell at column 5, row 2 of its box.
	if el := hp.Pages[0].Elements[0]; el.Selector != "a.buy" || fmt.Sprint(el.Spots) != "[{5 2 2}]" {
		t.Errorf("spots on %s: %v, want two clicks at column 5, row 2", el.Selector, el.Spots)
	}

	s := newSite()
	b := &event.Batch{Site: "demo", Session: "s", Received: goldenNow.UnixMilli()}
	for i := range 2 * heatPages {
		for c := range heatPanelCells + 50 {
			b.Events = append(b.Events, event.Event{Kind: event.KindMove, T: goldenNow.UnixMilli(), X: int32(c % 40 * 30), Y: int32(c / 40 * 30), VW: 1200, Path: fmt.Sprintf("/p%d", i)})
		}
	}
	s.applyBatch(b)
	hp = s.heat("demo", goldenNow)
	if len(hp.Pages) != heatPages {
		t.Errorf("%d pages in the heat panel, want %d", len(hp.Pages), heatPages)
	}
	for _, p := range hp.Pages {
		if n := len(p.Widths[event.WidthDesktop].Moves); n != heatPanelCells {
			t.Errorf("page %s: %d move cells, want %d", p.Path, n, heatPanelCells)
		}
	}
}
