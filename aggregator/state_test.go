package aggregator

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
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

// TestOverviewGolden builds a site from fixed batches and compares its
// overview with testdata/overview.golden (go test -update rewrites it).
func TestOverviewGolden(t *testing.T) {
	now := time.UnixMilli(1_700_000_060_500)
	s := newSite()
	base := now.UnixMilli() - 10_000
	batches := []event.Batch{
		{Site: "demo", Session: "s1", Visitor: "ann", Received: base + 1000, Events: []event.Event{
			{Kind: event.KindMove, T: base},
			{Kind: event.KindMove, T: base + 100},
			{Kind: event.KindClick, T: base + 900},
		}},
		{Site: "demo", Received: base + 5000, Events: []event.Event{
			{Kind: event.KindMove, T: base + 4000, Visitor: "user1"},
			{Kind: event.KindMove, T: base + 4000, Visitor: "user2"},
			{Kind: event.KindMove, T: base + 4100, Visitor: "user1"},
		}},
		// An event claiming a time far ahead of its batch is placed at the
		// batch's time plus the allowed slack.
		{Site: "demo", Session: "s2", Received: base + 6000, Events: []event.Event{
			{Kind: event.KindScroll, T: base + 999_999},
		}},
		// Too old for the chart: counted, not charted.
		{Site: "demo", Session: "s3", Received: base, Events: []event.Event{
			{Kind: event.KindLeave, T: base - 120_000},
		}},
	}
	for i := range batches {
		s.applyBatch(&batches[i])
	}
	s.applyPresence(&event.Presence{Kind: event.Join, Conn: "c1", Visitor: "ann"})
	got, err := json.MarshalIndent(s.overview("demo", now), "", "  ")
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

func TestPruneKeepsPresentVisitors(t *testing.T) {
	s := newSite()
	for i, v := range []string{"a", "b", "c", "d", "e"} {
		s.applyBatch(&event.Batch{Received: int64(i), Events: []event.Event{{Kind: event.KindMove, T: int64(i * 1000), Visitor: v}}})
	}
	s.applyPresence(&event.Presence{Kind: event.Join, Conn: "c", Visitor: "a"}) // oldest, but present
	s.prune(time.UnixMilli(5000), 4)
	// Down to 90% of 4 = 3: drop b and c (oldest not present), keep a.
	for v, want := range map[string]bool{"a": true, "b": false, "c": false, "d": true, "e": true} {
		if _, ok := s.Visitors[v]; ok != want {
			t.Errorf("visitor %s kept = %v, want %v", v, ok, want)
		}
	}
	s.prune(time.Unix(keepSeconds+10, 0), 100)
	if len(s.Seconds) != 0 {
		t.Errorf("seconds older than %d s kept: %v", keepSeconds, s.Seconds)
	}
}
