package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pulse-analytics/pulse/event"
)

func TestTrail(t *testing.T) {
	since := time.UnixMilli(1_700_000_000_000)
	at := func(ms int64) int64 { return since.UnixMilli() + ms }
	tr := newTrail("ann", since)
	tr.add(&event.Batch{Site: "demo", Visitor: "ann", Events: []event.Event{
		{Kind: event.KindMove, T: at(100), X: 10, Y: 20, VW: 800, Path: "/"},
		{Kind: event.KindMove, T: at(-1), X: 1, Y: 1, Path: "/"}, // before the replay
		{Kind: event.KindClick, T: at(1200), X: 15, Y: 25, Path: "/", Target: "a.buy"},
	}})
	// A classic batch mixes visitors: only ann's count.
	tr.add(&event.Batch{Site: "demo", Events: []event.Event{
		{Kind: event.KindMove, T: at(1300), Visitor: "bob", Path: "/"},
		{Kind: event.KindDeadClick, T: at(1400), Visitor: "ann", Path: "/pricing"},
	}})
	tr.add(&event.Batch{Site: "demo", Visitor: "bob", Events: []event.Event{{Kind: event.KindMove, T: at(1500)}}})

	pts, from, next := tr.pointsFrom(0)
	if from != 0 || next != 3 || len(pts) != 3 || pts[0].X != 10 || pts[1].Sel != "a.buy" || pts[2].K != "deadclick" {
		t.Fatalf("points %+v from %d next %d", pts, from, next)
	}
	if pts, _, _ := tr.pointsFrom(3); len(pts) != 0 {
		t.Errorf("points after the last: %+v", pts)
	}
	p, changed := tr.panel("demo", since.Add(2*time.Second))
	if !changed || p.Events != 3 || p.Clicks != 1 || len(p.Pages) != 2 {
		t.Fatalf("panel changed %v: %+v", changed, p)
	}
	if p.Pages[0].Path != "/pricing" || p.Pages[0].DeadClicks != 1 || p.Pages[1].Clicks != 1 {
		t.Errorf("pages, last visited first: %+v", p.Pages)
	}
	if len(p.PerSecond) != 3 || p.PerSecond[0].N != 1 || p.PerSecond[1].N != 2 || p.PerSecondByKind["click"][1] != 1 {
		t.Errorf("per second %+v by kind %v", p.PerSecond, p.PerSecondByKind)
	}
	if _, changed := tr.panel("demo", since.Add(2*time.Second)); changed {
		t.Error("panel changed with nothing added")
	}
}

func TestTrailIsBounded(t *testing.T) {
	since := time.UnixMilli(1_700_000_000_000)
	tr := newTrail("ann", since)
	b := &event.Batch{Visitor: "ann"}
	for i := range maxTrailPoints + 100 {
		b.Events = append(b.Events[:0], event.Event{Kind: event.KindMove, T: since.UnixMilli() + int64(i), Path: "/p" + string(rune('a'+i%60))})
		tr.add(b)
	}
	if len(tr.points) > maxTrailPoints {
		t.Errorf("%d points held, want at most %d", len(tr.points), maxTrailPoints)
	}
	if len(tr.pages) > maxTrailPages+1 || tr.pages[otherTrailPage] == nil {
		t.Errorf("%d pages held, want %d and the rest under %q", len(tr.pages), maxTrailPages, otherTrailPage)
	}
	pts, from, next := tr.pointsFrom(0)
	if from != tr.dropped || len(pts) != trailFrame || next != from+trailFrame {
		t.Errorf("points from 0: %d from %d next %d; dropped %d", len(pts), from, next, tr.dropped)
	}
	// The per-second counts keep only the replay's window.
	p, _ := tr.panel("demo", since.Add(trailReplay+time.Hour))
	if len(tr.seconds) != 0 || len(p.PerSecond) != int(trailReplay/time.Second)+1 {
		t.Errorf("%d seconds held, %d in the chart", len(tr.seconds), len(p.PerSecond))
	}
}

func TestValidVisitor(t *testing.T) {
	for id, want := range map[string]bool{
		"AbCdEfGhIjKlMnOpQrStUv": true,
		"user-42@classic":        true,
		"":                       false,
		strings.Repeat("x", 129): false,
		"bad\nid":                false,
		"\xff":                   false,
	} {
		if validVisitor(id) != want {
			t.Errorf("validVisitor(%q) = %v", id, !want)
		}
	}
}

// publishBatch stores a batch on the site's activity subject as ingest does.
func (d *testDash) publishBatch(t testing.TB, b *event.Batch) {
	t.Helper()
	if _, err := d.ns.JS.Publish(context.Background(), event.ActivitySubject(b.Site), event.AppendBatches(nil, []*event.Batch{b})); err != nil {
		t.Fatal(err)
	}
}

// TestVisitorStream opens a visitor's stream after some of their events:
// the stream replays those, then sends new ones as they arrive, and none
// of other visitors.
func TestVisitorStream(t *testing.T) {
	d := startDash(t, Config{AdminPassword: password})
	web := d.login(t)
	now := time.Now().UnixMilli()
	d.publishBatch(t, &event.Batch{Site: "demo", Visitor: "ann", Session: "s1", Node: "n1", Received: now, Events: []event.Event{
		{Kind: event.KindMove, T: now - 500, X: 10, Y: 10, VW: 1000, Path: "/"},
		{Kind: event.KindClick, T: now - 400, X: 12, Y: 11, VW: 1000, Path: "/", Target: "a.buy"},
	}})
	d.publishBatch(t, &event.Batch{Site: "demo", Visitor: "bob", Node: "n1", Received: now, Events: []event.Event{{Kind: event.KindMove, T: now, X: 99}}})

	resp, err := web.Get(d.url + visitorSSE("demo", "ann"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stream: %s", resp.Status)
	}
	r := bufio.NewReader(resp.Body)
	type trailEvent struct {
		From   uint64
		Points []trailPoint
	}
	next := func(name string) json.RawMessage {
		t.Helper()
		var ev string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("stream ended waiting for %s: %v", name, err)
			}
			if v, ok := strings.CutPrefix(line, "event: "); ok {
				ev = strings.TrimSpace(v)
			}
			if v, ok := strings.CutPrefix(line, "data: "); ok && ev == name {
				return json.RawMessage(v)
			}
		}
	}
	var got []trailPoint
	for len(got) < 2 {
		var te trailEvent
		if err := json.Unmarshal(next("trail"), &te); err != nil {
			t.Fatal(err)
		}
		if te.From != uint64(len(got)) {
			t.Fatalf("trail from %d, want %d", te.From, len(got))
		}
		got = append(got, te.Points...)
	}
	if len(got) != 2 || got[0].X != 10 || got[1].K != "click" || got[1].Sel != "a.buy" {
		t.Fatalf("replay %+v", got)
	}
	// Live: a new event of ann's arrives; bob's never does.
	d.publishBatch(t, &event.Batch{Site: "demo", Visitor: "bob", Node: "n1", Received: now, Events: []event.Event{{Kind: event.KindMove, T: now + 10, X: 98}}})
	d.publishBatch(t, &event.Batch{Site: "demo", Visitor: "ann", Session: "s1", Node: "n1", Received: now + 100, Events: []event.Event{{Kind: event.KindMove, T: now + 100, X: 30, Y: 40, Path: "/"}}})
	var te trailEvent
	if err := json.Unmarshal(next("trail"), &te); err != nil {
		t.Fatal(err)
	}
	if te.From != 2 || len(te.Points) != 1 || te.Points[0].X != 30 {
		t.Fatalf("live points %+v", te)
	}
	// The figures follow, with the chart and the fragments.
	for {
		var u struct {
			Panel     visitorPanel
			Charts    map[string]any
			Fragments map[string]string
		}
		if err := json.Unmarshal(next("visitor"), &u); err != nil {
			t.Fatal(err)
		}
		if u.Panel.Events < 3 {
			continue
		}
		if u.Panel.Events != 3 || u.Panel.Clicks != 1 || u.Charts[chartVisitorActivity] == nil || !strings.Contains(u.Fragments["pages"], "<code>/</code>") {
			t.Fatalf("figures %+v", u)
		}
		break
	}
}

func TestVisitorPageAndStreamRefusals(t *testing.T) {
	d := startDash(t, Config{AdminPassword: password, MaxVisitorStreamsPerUser: 1})
	admin := d.login(t)
	for _, tt := range []struct {
		path string
		want int
	}{
		{"/sites/demo/visitors/ann", http.StatusOK},
		{"/sites/demo/visitors/" + url.PathEscape("a\nb"), http.StatusNotFound},
		{"/sites/Bad%20Site/visitors/ann", http.StatusNotFound},
		{"/sse/visitor?site=demo", http.StatusBadRequest},
	} {
		resp, err := admin.Get(d.url + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("GET %s: %s, want %d: %s", tt.path, resp.Status, tt.want, body)
		}
		if tt.want == http.StatusOK && !strings.Contains(string(body), `data-sse="/sse/visitor?site=demo&amp;visitor=ann"`) {
			t.Errorf("visitor page without its stream: %s", body)
		}
	}
	// A user without the site sees neither the page nor the stream.
	ann := d.grantedUser(t, admin)
	for _, path := range []string{"/sites/demo/visitors/ann", visitorSSE("demo", "ann")} {
		resp, err := ann.Get(d.url + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("GET %s by a user without the site: %s", path, resp.Status)
		}
	}
	// One visitor stream per user here: the second is refused.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", d.url+visitorSSE("demo", "ann"), nil)
	first, err := admin.Do(req)
	if err != nil || first.StatusCode != http.StatusOK {
		t.Fatalf("first visitor stream: %v %v", first, err)
	}
	defer first.Body.Close()
	resp, err := admin.Get(d.url + visitorSSE("demo", "bob"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "visitor pages") {
		t.Errorf("second visitor stream: %s %s", resp.Status, body)
	}
}

// BenchmarkVisitorTrailLatency measures how long a visitor's event takes
// from being stored in the ACTIVITY stream (as an ingest node stores a
// tracker's batch) to the visitor page's stream, one event at a time, and
// reports the median and the 99th percentile:
// `go test -run '^$' -bench VisitorTrailLatency -benchtime 2000x ./dashboard`.
// The tracker's flush interval and the ingest node's 50 ms batching come
// before this, and are not in it.
func BenchmarkVisitorTrailLatency(b *testing.B) {
	d := startDash(b, Config{AdminPassword: password})
	web := d.login(b)
	resp, err := web.Get(d.url + visitorSSE("demo", "ann"))
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("visitor stream: %v %v", resp, err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	nextTrail := func() {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				b.Fatalf("stream ended: %v", err)
			}
			if line == "event: trail\n" {
				return
			}
		}
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		now := time.Now()
		d.publishBatch(b, &event.Batch{Site: "demo", Visitor: "ann", Node: "n1", Received: now.UnixMilli(), Events: []event.Event{
			{Kind: event.KindMove, T: now.UnixMilli(), X: int32(i % 1000), Y: 10, VW: 1000, Path: "/"},
		}})
		nextTrail()
		lat = append(lat, time.Since(now))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
