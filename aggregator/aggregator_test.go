package aggregator

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulse-analytics/pulse/event"
	"github.com/pulse-analytics/pulse/natsutil/natstest"
	"github.com/pulse-analytics/pulse/store"
)

// runAggregator runs an aggregator until the returned stop is called;
// edit changes its configuration.
// panelsOf receives every site's panels of the name panel (the last
// token of dash.<site>.<panel>), decoded, until the test ends.
func panelsOf[T any](t *testing.T, ns *natstest.Server, panel string) <-chan T {
	t.Helper()
	panels := make(chan T, 100)
	sub, err := ns.NC.Subscribe(event.DashSubject("*", panel), func(m *nats.Msg) {
		var v T
		if json.Unmarshal(m.Data, &v) == nil {
			panels <- v
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return panels
}

func runAggregator(t *testing.T, ns *natstest.Server, edit ...func(*Config)) (stop func()) {
	t.Helper()
	cfg := Config{JetStream: ns.JS, Notifier: ns.NC, Snapshots: ns.Stores.Snapshots, Views: ns.Stores.Views, Nodes: ns.Stores.Nodes, Tick: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}
	for _, e := range edit {
		e(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("aggregator: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

var batchSeq int

func publishBatches(t *testing.T, js jetstream.JetStream, site string, batches, events int) {
	t.Helper()
	for range batches {
		batchSeq++
		evs := make([]event.Event, events)
		for i := range evs {
			evs[i] = event.Event{Kind: event.KindClick, T: time.Now().UnixMilli(), X: int32(i)}
		}
		data, _ := json.Marshal(event.Batch{Site: site, Session: "s", Visitor: "v", Seq: uint64(batchSeq), Received: time.Now().UnixMilli(), Events: evs})
		msg := &nats.Msg{Subject: event.ActivitySubject(site), Data: data, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%s:s:%d", site, batchSeq))
		if _, err := js.PublishMsg(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
	}
}

func waitEvents(t *testing.T, views *store.Views, site string, want uint64) event.Overview {
	t.Helper()
	var ov event.Overview
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if data, err := views.Panel(context.Background(), site, event.PanelOverview); err == nil {
			_ = json.Unmarshal(data, &ov)
			if ov.Events == want {
				return ov
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("site %s: %d events, want %d", site, ov.Events, want)
	return ov
}

func TestExactCountsThroughRestart(t *testing.T) {
	ns := natstest.Run(t)
	stop := runAggregator(t, ns)
	publishBatches(t, ns.JS, "demo", 10, 5)
	publishBatches(t, ns.JS, "shop", 3, 2)
	waitEvents(t, ns.Stores.Views, "demo", 50)
	waitEvents(t, ns.Stores.Views, "shop", 6)
	stop()

	// Events published while the aggregator is down are counted after it
	// starts again, and nothing before them is counted twice.
	publishBatches(t, ns.JS, "demo", 4, 5)
	stop = runAggregator(t, ns)
	ov := waitEvents(t, ns.Stores.Views, "demo", 70)
	if ov.ByKind["click"] != 70 {
		t.Errorf("by kind %v", ov.ByKind)
	}
	waitEvents(t, ns.Stores.Views, "shop", 6)
	stop()
}

// TestLostConsumerIsRenewed: when the aggregator's consumer disappears
// (deleted here; in a cluster, with the NATS server that held it), the
// aggregator goes on under a new one, counts every event once, and says
// so in its metrics.
func TestLostConsumerIsRenewed(t *testing.T) {
	ns := natstest.Run(t)
	reg := prometheus.NewRegistry()
	runAggregator(t, ns, func(c *Config) { c.Registerer = reg })
	publishBatches(t, ns.JS, "demo", 5, 2)
	waitEvents(t, ns.Stores.Views, "demo", 10)
	if n := renewals(t, reg); n != 0 {
		t.Fatalf("%v renewals before the consumer was lost", n)
	}

	ctx := context.Background()
	st, err := ns.JS.Stream(ctx, event.StreamActivity)
	if err != nil {
		t.Fatal(err)
	}
	names := st.ConsumerNames(ctx)
	for name := range names.Name() {
		if err := st.DeleteConsumer(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
	if err := names.Err(); err != nil {
		t.Fatal(err)
	}
	publishBatches(t, ns.JS, "demo", 5, 2)
	waitEvents(t, ns.Stores.Views, "demo", 20)
	if n := renewals(t, reg); n < 1 {
		t.Errorf("%v renewals after the consumer was deleted, want at least 1", n)
	}
}

// renewals reads pulse_aggregator_consumer_renewals_total of the
// activity stream from reg.
func renewals(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "pulse_aggregator_consumer_renewals_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "stream" && l.GetValue() == event.StreamActivity {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatal("no pulse_aggregator_consumer_renewals_total for the activity stream")
	return 0
}

// TestSnapshotLostReplaysFromStart: when the snapshot is gone, the
// aggregator replays the stream from its start rather than skip what its
// state lacks.
func TestSnapshotLostReplaysFromStart(t *testing.T) {
	ns := natstest.Run(t)
	stop := runAggregator(t, ns)
	publishBatches(t, ns.JS, "demo", 6, 3)
	waitEvents(t, ns.Stores.Views, "demo", 18)
	stop()

	ctx := context.Background()
	// As an operator who lost them would: the index, and the site's
	// snapshot, by their stored names.
	state, _ := ns.JS.KeyValue(ctx, "pulse_state")
	if err := state.Purge(ctx, "seq"); err != nil {
		t.Fatal(err)
	}
	snaps, _ := ns.JS.ObjectStore(ctx, "pulse_snapshots")
	if err := snaps.Delete(ctx, "site.demo"); err != nil {
		t.Fatal(err)
	}
	publishBatches(t, ns.JS, "demo", 1, 3)
	runAggregator(t, ns)
	waitEvents(t, ns.Stores.Views, "demo", 21)
}

func TestPanelUpdatesOnNATS(t *testing.T) {
	ns := natstest.Run(t)
	updates := panelsOf[event.Overview](t, ns, event.PanelOverview)
	runAggregator(t, ns)
	publishBatches(t, ns.JS, "demo", 2, 2)
	timeout := time.After(10 * time.Second)
	var last uint64
	for {
		select {
		case ov := <-updates:
			if ov.Version <= last && last != 0 {
				t.Fatalf("version went from %d to %d", last, ov.Version)
			}
			last = ov.Version
			if ov.Site == "demo" && ov.Events == 4 && len(ov.PerSecond) == chartWindow {
				return
			}
		case <-timeout:
			t.Fatal("no panel update with 4 events")
		}
	}
}

// TestSlicesShareThePartitions: two aggregators, each owning half of the
// partitions, count every site exactly once between them; a third for a
// slice already owned stands by and takes over when the owner stops.
func TestSlicesShareThePartitions(t *testing.T) {
	ns := natstest.Run(t)
	start := func(slice int) (stop func()) {
		a, err := New(Config{JetStream: ns.JS, Notifier: ns.NC, Snapshots: ns.Stores.Snapshots, Views: ns.Stores.Views, Nodes: ns.Stores.Nodes, Tick: 20 * time.Millisecond, Slice: slice, Slices: 2, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = a.Run(ctx) }()
		var once sync.Once
		stop = func() { once.Do(func() { cancel(); <-done }) }
		t.Cleanup(stop)
		return stop
	}
	stop0 := start(0)
	start(1)
	standby := start(0)
	defer standby()
	sites := []string{"alpha", "beta", "gamma", "delta", "epsilon", "zeta"}
	slices := map[int]bool{}
	for i, site := range sites {
		publishBatches(t, ns.JS, site, i+1, 3)
		slices[event.Partition(site)%2] = true
	}
	if len(slices) != 2 {
		t.Fatalf("the test's sites all fall in one slice: %v", slices)
	}
	for i, site := range sites {
		waitEvents(t, ns.Stores.Views, site, uint64((i+1)*3))
	}
	// The owner of slice 0 stops; the standby takes over (at once: the
	// owner gave its lease up) and counts on from the snapshot.
	stop0()
	for i, site := range sites {
		publishBatches(t, ns.JS, site, 1, 3)
		waitEvents(t, ns.Stores.Views, site, uint64((i+2)*3))
	}
}

// TestReSentBatchesCountOnce: a tracker batch stored twice (its tracker
// re-sent it after a lost ack, through any ingest node) is counted once,
// also when the copy comes after a restart.
func TestReSentBatchesCountOnce(t *testing.T) {
	ns := natstest.Run(t)
	publish := func(id string, batches ...*event.Batch) {
		t.Helper()
		msg := &nats.Msg{Subject: event.ActivitySubject("demo"), Data: event.AppendBatches(nil, batches), Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, id)
		if _, err := ns.JS.PublishMsg(context.Background(), msg); err != nil {
			t.Fatal(err)
		}
	}
	tracker := func(session string, seq uint64) *event.Batch {
		now := time.Now().UnixMilli()
		evs := []event.Event{{Kind: event.KindMove, T: now}, {Kind: event.KindClick, T: now}, {Kind: event.KindMove, T: now}}
		return &event.Batch{Site: "demo", Session: session, Visitor: session, Seq: seq, Node: "n", Received: now, Events: evs}
	}
	classic := &event.Batch{Site: "demo", Node: "n", Received: time.Now().UnixMilli(), Events: []event.Event{{Kind: event.KindMove, Visitor: "c"}}}

	stop := runAggregator(t, ns)
	publish("m1", tracker("a", 1), tracker("a", 2), classic, tracker("b", 1))
	publish("m2", tracker("a", 2), tracker("a", 3), tracker("b", 1), classic)
	waitEvents(t, ns.Stores.Views, "demo", 3*4+2)
	stop()

	publish("m3", tracker("a", 3), tracker("a", 4), tracker("b", 2), tracker("a", 1))
	runAggregator(t, ns)
	// a1–a4 and b1–b2 once each, and both classic batches.
	ov := waitEvents(t, ns.Stores.Views, "demo", 3*6+2)
	if ov.ByKind["click"] != 6 {
		t.Errorf("clicks %d, want 6 (one per tracker batch)", ov.ByKind["click"])
	}
}

// TestRunKeepsItsGoroutines: an aggregator that only ticks must not
// gain goroutines as it goes (asking nats.go's ordered consumer, used
// before package follow, for its Closed channel at every turn of the loop
// started one each time).
func TestRunKeepsItsGoroutines(t *testing.T) {
	ns := natstest.Run(t)
	runAggregator(t, ns)
	publishBatches(t, ns.JS, "demo", 1, 1)
	waitEvents(t, ns.Stores.Views, "demo", 1)
	before := runtime.NumGoroutine()
	time.Sleep(1500 * time.Millisecond) // about 75 ticks of 20 ms
	if after := runtime.NumGoroutine(); after > before+10 {
		t.Errorf("goroutines went from %d to %d over 1.5 s of ticks", before, after)
	}
}

// TestVersionsClimbPastAnOldSnapshot: an aggregator that takes over from
// a snapshot older than the last panel its predecessor published still
// publishes versions above that panel's, so a dashboard that stayed
// connected takes them (it drops versions not above the last it sent).
func TestVersionsClimbPastAnOldSnapshot(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	var published uint64
	snapshot := uint64(0)
	for i := range 20 { // the first aggregator: a tick a second, a snapshot at the 5th
		published = nextVersion(published, t0.Add(time.Duration(i)*time.Second))
		if i == 4 {
			snapshot = published
		}
	}
	// Killed; the next starts from the snapshot 10 s later.
	next := nextVersion(snapshot, t0.Add(30*time.Second))
	if next <= published {
		t.Fatalf("after the takeover version %d, not above the last published %d", next, published)
	}
	// Within one millisecond versions still grow.
	if v := nextVersion(next, t0); v != next+1 {
		t.Errorf("next after %d at an earlier clock: %d, want %d", next, v, next+1)
	}
}

// TestLivePanelsBetweenOverviews: with overviews an hour apart, a site's
// totals still go out as live panels as soon as they move, with versions
// that only grow, and none while nothing moves.
func TestLivePanelsBetweenOverviews(t *testing.T) {
	ns := natstest.Run(t)
	panels := panelsOf[event.LivePanel](t, ns, event.PanelLive)
	runAggregator(t, ns, func(c *Config) { c.Tick, c.LiveEvery = time.Hour, 10*time.Millisecond })
	var last event.LivePanel
	wait := func(events uint64) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for last.Events < events {
			select {
			case lp := <-panels:
				if lp.Site != "demo" || lp.Version <= last.Version {
					t.Fatalf("live panel %+v after version %d", lp, last.Version)
				}
				last = lp
			case <-timeout:
				t.Fatalf("no live panel with %d events (last %+v)", events, last)
			}
		}
		if last.Events != events || last.ByKind["click"] != events || last.SecondByKind == nil {
			t.Fatalf("live panel %+v, want %d clicks", last, events)
		}
	}
	publishBatches(t, ns.JS, "demo", 1, 3)
	wait(3)
	publishBatches(t, ns.JS, "demo", 1, 2)
	wait(5)
	select {
	case lp := <-panels:
		t.Errorf("a live panel with nothing new: %+v", lp)
	case <-time.After(100 * time.Millisecond):
	}
}
