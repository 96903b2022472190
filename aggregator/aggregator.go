// Package aggregator turns the ACTIVITY stream into live figures per site
// and page (events, windows, presence, heatmaps, scroll depth, rage clicks)
// and the QUOTES stream into the quotes panel. It is the only place where
// state is computed. Its state survives restarts as snapshots in a
// JetStream object store with an index in KV (the stream sequence they
// cover, and the sites): on start it loads them and reads the stream in
// order from the next sequence, which gives exact counts through a crash,
// where acks alone could not. Several aggregators share the activity by
// partition (see Config.Slice).
package aggregator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulse-analytics/pulse/event"
	"github.com/pulse-analytics/pulse/natsutil/follow"
	"github.com/pulse-analytics/pulse/store"
)

// Notifier publishes panel updates.
type Notifier interface {
	// Publish sends data on subject without waiting for receivers (core
	// NATS). Safe for concurrent use; an error means the update is lost,
	// which is harmless: the next tick sends a newer one.
	Publish(subject string, data []byte) error
}

// Config configures an Aggregator. Zero fields take the stated defaults.
type Config struct {
	// JetStream is where the streams are. Required.
	JetStream jetstream.JetStream
	// Snapshots keep the aggregator's state, Views its latest panels,
	// Nodes its slice lease and the ingest nodes' statuses. Required.
	Snapshots *store.Snapshots
	Views     *store.Views
	Nodes     *store.Nodes
	// Notifier receives panel updates. Required.
	Notifier Notifier
	// Tick is how often panels are published. Default 1 s: the
	// resolution of the events-per-second chart.
	Tick time.Duration
	// LiveEvery is the least time between two rounds of live panels,
	// which carry the totals of every site that moved between its
	// overviews. A round goes out as soon as totals move and LiveEvery
	// has passed since the last (see livePacer). Default 100 ms;
	// negative: none.
	LiveEvery time.Duration
	// SnapshotEvery is how often changed sites' snapshots are written.
	// Default 10 s: a restart replays at most that much of the stream,
	// and writing a site's whole state every tick cost more CPU than
	// counting 20,000 events a second.
	SnapshotEvery time.Duration
	// Slice and Slices say which partitions of the activity this
	// aggregator owns: those p with p % Slices == Slice. Several
	// aggregators with the same Slices and different Slice share the load;
	// one with the same Slice as a running one stands by. Default 0 of 1:
	// every partition. Only slice 0 aggregates quotes.
	Slice, Slices int
	// InstanceID names this aggregator in its ownership lease. Default:
	// random.
	InstanceID string
	// MaxVisitors bounds the visitors kept per site. Default 10,000: the
	// snapshot of a site then stays well under NATS's 1 MB message limit.
	MaxVisitors int
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer receives the aggregator's metrics. Default: a private
	// registry.
	Registerer prometheus.Registerer
}

// Aggregator consumes ACTIVITY and publishes panels. Create it with New and
// run it with Run.
type Aggregator struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	running atomic.Bool

	// mu guards everything below; the consumers' handlers and the ticker
	// take it.
	mu     sync.Mutex
	quotes *quoteState
	seq    uint64 // last stream sequence applied, over all sites
	// batch is the decoding buffer of handle, reused.
	batch event.Batch
	sites map[string]*Site
	// savedSeq is the sequence the stored snapshot covers; only the
	// ticker touches it.
	savedSeq uint64
	// lastSnapshot is when snapshots were last written (tick's own).
	lastSnapshot time.Time
	// lease is the slice lease; only Run touches it.
	lease *store.SliceLease
	// moved is signalled by handle when a site's totals moved, for the
	// live panels (livePacer).
	moved chan struct{}
}

// New returns an Aggregator.
func New(cfg Config) (*Aggregator, error) {
	if cfg.JetStream == nil || cfg.Notifier == nil || cfg.Snapshots == nil || cfg.Views == nil || cfg.Nodes == nil {
		return nil, errors.New("aggregator: jetstream, notifier, snapshots, views and nodes are required")
	}
	if cfg.Tick == 0 {
		cfg.Tick = time.Second
	}
	if cfg.SnapshotEvery == 0 {
		cfg.SnapshotEvery = 10 * time.Second
	}
	if cfg.LiveEvery == 0 {
		cfg.LiveEvery = 100 * time.Millisecond
	}
	if cfg.Slices <= 0 {
		cfg.Slices = 1
	}
	if cfg.Slice < 0 || cfg.Slice >= cfg.Slices {
		return nil, fmt.Errorf("aggregator: slice %d of %d", cfg.Slice, cfg.Slices)
	}
	if cfg.InstanceID == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		cfg.InstanceID = hex.EncodeToString(b[:])
	}
	if cfg.MaxVisitors == 0 {
		cfg.MaxVisitors = 10_000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Aggregator{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "aggregator"),
		metrics: m,
		sites:   make(map[string]*Site),
		quotes:  newQuoteState(),
		moved:   make(chan struct{}, 1),
	}, nil
}

// owns reports whether site is in this aggregator's slice.
func (a *Aggregator) owns(site string) bool {
	return event.Partition(site)%a.cfg.Slices == a.cfg.Slice
}

// filter lists the subjects of this aggregator's slice; none, for the
// whole stream, when the one slice owns every partition. nats-server
// finds the next message of a consumer with filter subjects by matching
// them against the stream's subjects, one per site: with 10,000 sites
// that took 41 % of a node's CPU (bench/results/2026-12-07-cost), and a
// consumer without a filter reads the stream in order instead.
func (a *Aggregator) filter() []string {
	if a.cfg.Slices == 1 {
		return nil
	}
	var subjects []string
	for p := range event.Partitions {
		if p%a.cfg.Slices == a.cfg.Slice {
			subjects = append(subjects, event.PartitionSubjects(p)...)
		}
	}
	return subjects
}

// quotesOwner reports whether this aggregator aggregates quotes.
func (a *Aggregator) quotesOwner() bool { return a.cfg.Slice == 0 }

// Figures are the aggregator's numbers for its status report.
func (a *Aggregator) Figures() map[string]float64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return map[string]float64{
		"sites":        float64(len(a.sites)),
		"activity_seq": float64(a.seq),
		"quotes_seq":   float64(a.quotes.Seq),
		"symbols":      float64(len(a.quotes.Symbols)),
	}
}

// Ready reports nil while Run is consuming.
func (a *Aggregator) Ready() error {
	if !a.running.Load() {
		return errors.New("aggregator: not consuming")
	}
	return nil
}

// Run loads the snapshot, consumes the stream from the sequence after it,
// and publishes panels every tick until ctx ends; then it writes a last
// snapshot and returns. After an error it may be called again.
func (a *Aggregator) Run(ctx context.Context) error {
	if err := a.acquireSlice(ctx); err != nil {
		return err
	}
	// Run may be called again after a failure: start from the snapshot.
	a.mu.Lock()
	a.seq, a.savedSeq, a.sites, a.quotes = 0, 0, make(map[string]*Site), newQuoteState()
	a.mu.Unlock()
	if err := a.load(ctx); err != nil {
		return err
	}
	if err := a.loadQuotes(ctx); err != nil {
		return err
	}
	a.log.Info("aggregator consuming", "activity_from_seq", a.seq+1, "sites", len(a.sites), "quotes_from_seq", a.quotes.Seq+1)
	followers := make([]*follow.Follower, 0, 2)
	stop := func() {
		for _, f := range followers {
			f.Stop(drainWait)
		}
	}
	activity, err := a.follow(ctx, event.StreamActivity, a.filter(), a.seq, a.handle)
	if err != nil {
		return err
	}
	followers = append(followers, activity)
	// Only slice 0 aggregates quotes.
	if a.quotesOwner() {
		quotes, err := a.follow(ctx, event.StreamQuotes, nil, a.quotes.Seq, a.handleQuote)
		if err != nil {
			stop()
			return err
		}
		followers = append(followers, quotes)
	}
	a.running.Store(true)
	// The lease is held by a goroutine of its own: a tick that takes
	// long (thousands of sites on a busy machine) must not let it expire
	// and hand the slice to a standby while this aggregator still works.
	keepCtx, stopKeeping := context.WithCancel(ctx)
	lost := make(chan error, 1)
	var keeping sync.WaitGroup
	keeping.Go(func() { lost <- a.keepSlice(keepCtx) })
	defer func() {
		stopKeeping()
		keeping.Wait()
	}()

	t := time.NewTicker(a.cfg.Tick)
	defer t.Stop()
	// The live panels: moved wakes the loop when totals move, the timer
	// when a paced round is due.
	var moved <-chan struct{}
	if a.cfg.LiveEvery > 0 {
		moved = a.moved
	}
	pacer := livePacer{every: a.cfg.LiveEvery}
	live := time.NewTimer(0)
	live.Stop()
	defer live.Stop()
	var lastSweep time.Time
	for {
		select {
		case <-moved:
			now := time.Now()
			if runNow, wait := pacer.moved(now); runNow {
				a.tickLive(now)
			} else if wait > 0 {
				live.Reset(wait)
			}
		case now := <-live.C:
			pacer.due(now)
			a.tickLive(now)
		case now := <-t.C:
			a.tick(ctx, now, false)
			if a.quotesOwner() {
				a.tickQuotes(ctx, now)
			}
			if now.Sub(lastSweep) >= nodeSweep && ctx.Err() == nil {
				a.sweepLostNodes(ctx, now)
				lastSweep = now
			}
		case err := <-lost:
			if ctx.Err() == nil {
				stop()
				a.running.Store(false)
				return err
			}
		case <-ctx.Done():
			a.running.Store(false)
			// Messages delivered are applied first, for at most
			// drainWait; the rest are replayed at the next start.
			stop()
			// The last snapshot must be written even though ctx is done.
			stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			a.tick(stopCtx, time.Now(), true)
			if a.quotesOwner() {
				a.tickQuotes(stopCtx, time.Now())
			}
			// Its own time: a final snapshot that took long must not keep
			// a standby waiting for a lease that was never given up.
			stopKeeping()
			keeping.Wait()
			releaseCtx, cancelRelease := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancelRelease()
			a.releaseSlice(releaseCtx)
			return nil
		}
	}
}

// follow consumes stream in order from the message after seq, the
// sequence the state covers, through NATS failures (see package follow).
// A durable consumer with acks cannot do this: after a crash or a leader
// change it redelivers unacked messages only when their ack wait runs out,
// behind later ones, which the state would then have to take out of
// order. The snapshot's sequence, not an ack floor, says where to start.
func (a *Aggregator) follow(ctx context.Context, stream string, filter []string, seq uint64, handle jetstream.MessageHandler) (*follow.Follower, error) {
	renewals := a.metrics.renewals.WithLabelValues(stream)
	f, err := follow.Start(ctx, a.cfg.JetStream, follow.Options{
		Stream: stream, Filter: filter, After: seq, Logger: a.log, Renewed: renewals.Inc,
	}, handle)
	if err != nil {
		return nil, fmt.Errorf("aggregator: %w", err)
	}
	return f, nil
}

// handle applies one message. Messages at or below a sequence already in
// the state (redeliveries, replays after a restart) are skipped.
func (a *Aggregator) handle(msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		a.log.Error("message without metadata", "err", err)
		return
	}
	seq := meta.Sequence.Stream
	a.mu.Lock()
	defer a.mu.Unlock()
	if seq <= a.seq {
		return
	}
	a.seq = seq
	// activity.<partition>.<site> or presence.<partition>.<site>
	parts := strings.Split(msg.Subject(), ".")
	if len(parts) != 3 || !event.ValidSite(parts[2]) {
		a.metrics.invalid.Inc()
		return
	}
	kind, site := parts[0], parts[2]
	if !a.owns(site) {
		a.metrics.invalid.Inc()
		return
	}
	s := a.sites[site]
	if s == nil {
		s = newSite()
		// Snapshotted at the next tick even if nothing is applied to it,
		// as the snapshot index will name it.
		s.dirty = true
		a.sites[site] = s
	}
	if seq <= s.Seq {
		return
	}
	s.Seq = seq
	switch kind {
	case "activity":
		var events int
		err := event.DecodeBatches(msg.Data(), &a.batch, func(b *event.Batch) {
			if s.applyBatch(b) {
				events += len(b.Events)
			} else {
				a.metrics.duplicates.Inc()
			}
		})
		a.metrics.events.WithLabelValues(site).Add(float64(events))
		if events > 0 {
			a.totalsMoved()
		}
		if err != nil {
			a.metrics.invalid.Inc()
			a.log.Warn("skipping the rest of a message", "seq", seq, "err", err)
		}
	case "presence":
		var p event.Presence
		if err := event.Decode("presence", msg.Data(), &p); err != nil {
			a.metrics.invalid.Inc()
			a.log.Warn("skipping message", "seq", seq, "err", err)
			return
		}
		s.applyPresence(&p)
		a.totalsMoved()
	default:
		a.metrics.invalid.Inc()
	}
}

// totalsMoved wakes Run for the live panels; it never blocks, and one
// wake-up stands for any number of moves.
func (a *Aggregator) totalsMoved() {
	select {
	case a.moved <- struct{}{}:
	default:
	}
}

// tick publishes the panels and, every SnapshotEvery or when final, writes
// the snapshot of every changed site, then the sequence all sites cover.
func (a *Aggregator) tick(ctx context.Context, now time.Time, final bool) {
	snapshot := final || now.Sub(a.lastSnapshot) >= a.cfg.SnapshotEvery
	if snapshot {
		a.lastSnapshot = now
	}
	type out struct {
		site     string
		snapshot []byte
		encErr   error
		overview []byte
		heat     []byte // nil when the site did not change
	}
	var outs []out
	a.mu.Lock()
	idx := store.SnapshotIndex{Seq: a.seq, Sites: slices.Sorted(maps.Keys(a.sites))}
	seq := idx.Seq
	for name, s := range a.sites {
		changed := s.dirty
		if !changed && !s.activeWithin(now) {
			continue
		}
		s.prune(now, a.cfg.MaxVisitors)
		s.Version = nextVersion(s.Version, now)
		o := out{site: name}
		if changed && snapshot {
			s.dirty = false
			o.snapshot, o.encErr = encodeSnapshot(s)
		}
		o.overview, _ = json.Marshal(s.overview(name, now))
		s.liveChanged() // the overview shows the totals too
		if changed {
			o.heat, _ = json.Marshal(s.heat(name, now))
		}
		outs = append(outs, o)
	}
	a.mu.Unlock()

	for _, o := range outs {
		if o.encErr != nil {
			a.snapshotFailed(o.site, o.encErr)
			return
		}
		if o.snapshot != nil {
			if err := a.cfg.Snapshots.PutSite(ctx, o.site, o.snapshot); err != nil {
				a.snapshotFailed(o.site, err)
				return
			}
		}
	}
	if snapshot && seq > a.savedSeq {
		if err := a.cfg.Snapshots.PutIndex(ctx, a.cfg.Slice, a.cfg.Slices, idx); err != nil {
			a.snapshotFailed("", err)
			return
		}
		a.savedSeq = seq
		a.metrics.seq.Set(float64(seq))
	}
	for _, o := range outs {
		if err := a.cfg.Views.PutPanel(ctx, o.site, event.PanelOverview, o.overview); err != nil {
			a.log.Warn("view not stored", "site", o.site, "err", err)
		}
		if err := a.cfg.Notifier.Publish(event.DashSubject(o.site, event.PanelOverview), o.overview); err != nil {
			a.log.Warn("panel not published", "site", o.site, "err", err)
		}
		if o.heat == nil {
			continue
		}
		if err := a.cfg.Views.PutPanel(ctx, o.site, event.PanelHeat, o.heat); err != nil {
			a.log.Warn("heat view not stored", "site", o.site, "err", err)
		}
		if err := a.cfg.Notifier.Publish(event.DashSubject(o.site, event.PanelHeat), o.heat); err != nil {
			a.log.Warn("heat panel not published", "site", o.site, "err", err)
		}
	}
}

// tickLive publishes a live panel of every site whose totals moved since
// its last panel. It is cheap (no series, no lists), so it can run many
// times a second; the overview follows at the next tick. Run paces it
// (livePacer).
func (a *Aggregator) tickLive(now time.Time) {
	type out struct {
		site string
		data []byte
	}
	var outs []out
	a.mu.Lock()
	for name, s := range a.sites {
		if !s.liveChanged() {
			continue
		}
		s.Version = nextVersion(s.Version, now)
		data, _ := json.Marshal(s.live(name, now))
		outs = append(outs, out{name, data})
	}
	a.mu.Unlock()
	for _, o := range outs {
		if err := a.cfg.Notifier.Publish(event.DashSubject(o.site, event.PanelLive), o.data); err != nil {
			a.log.Warn("live panel not published", "site", o.site, "err", err)
		}
	}
}

// snapshotFailed marks every site dirty again, so the next tick retries
// the whole snapshot.
func (a *Aggregator) snapshotFailed(site string, err error) {
	a.lastSnapshot = time.Time{} // retry at the next tick
	a.metrics.snapshotErrors.Inc()
	a.log.Error("snapshot not written", "site", site, "err", err)
	a.mu.Lock()
	for _, s := range a.sites {
		s.dirty = true
	}
	a.mu.Unlock()
}

// acquireSlice waits until this aggregator holds its slice's lease (see
// store.SliceLease): a second aggregator for the same slice stands by
// until the owner's lease expires, about 15 s after it stopped.
func (a *Aggregator) acquireSlice(ctx context.Context) error {
	logged := false
	for {
		l, err := a.cfg.Nodes.TakeSliceLease(ctx, a.cfg.Slice, a.cfg.Slices, a.cfg.InstanceID)
		if err == nil {
			a.lease = l
			return nil
		}
		if !errors.Is(err, store.ErrLeaseHeld) {
			return fmt.Errorf("aggregator: %w", err)
		}
		if !logged {
			a.log.Info("another aggregator owns this slice; standing by", "slice", a.cfg.Slice, "slices", a.cfg.Slices)
			logged = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// keepSlice refreshes the lease every nodeSweep until ctx ends (nil) or
// the lease is lost (the error).
func (a *Aggregator) keepSlice(ctx context.Context) error {
	t := time.NewTicker(nodeSweep)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := a.lease.Refresh(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("aggregator: %w", err)
		}
	}
}

// releaseSlice gives the lease up at shutdown, for a standby to take over
// at once.
func (a *Aggregator) releaseSlice(ctx context.Context) {
	if a.lease == nil {
		return
	}
	if err := a.lease.Release(ctx); err != nil {
		a.log.Warn("slice lease not released; a standby takes over when it expires", "slice", a.lease.Name(), "err", err)
	}
}

// nodeSweep is how often the aggregator looks for connections of ingest
// nodes that stopped reporting; lostGrace is how long a connection must be
// known before it can be given up, so a node that has just started and not
// yet reported keeps its visitors.
const (
	nodeSweep = 5 * time.Second
	lostGrace = 30 * time.Second
)

// sweepLostNodes ends the presence of connections held by ingest nodes
// that no longer report (killed, or cut off): their leaves would otherwise
// never come, and their visitors would stay present for ever. The leaves
// go through the stream like any other, with the message id a real leave
// would have, so the state stays a replay of the stream.
func (a *Aggregator) sweepLostNodes(ctx context.Context, now time.Time) {
	live, err := a.cfg.Nodes.IngestNodes(ctx)
	if err != nil {
		return
	}
	type lost struct {
		site, conn string
		c          Conn
	}
	var leaves []lost
	a.mu.Lock()
	for name, s := range a.sites {
		for id, c := range s.Conns {
			if c.Node != "" && !live[c.Node] && now.Sub(time.UnixMilli(c.Joined)) > lostGrace {
				leaves = append(leaves, lost{name, id, c})
			}
		}
	}
	a.mu.Unlock()
	for _, l := range leaves {
		p := event.Presence{
			Kind: event.Leave, Site: l.site, Conn: l.conn, Session: l.c.Session, Visitor: l.c.Visitor,
			Node: l.c.Node, Reason: "node lost", Time: now.UnixMilli(),
		}
		data, _ := json.Marshal(p)
		msg := &nats.Msg{Subject: event.PresenceSubject(l.site), Data: data, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, l.conn+":"+string(event.Leave))
		if _, err := a.cfg.JetStream.PublishMsg(ctx, msg); err != nil {
			a.log.Warn("leave of a lost node not published", "node", l.c.Node, "err", err)
			return
		}
	}
	if len(leaves) > 0 {
		a.log.Info("ended the presence of connections of ingest nodes that stopped reporting", "connections", len(leaves))
	}
}

// drainWait bounds how long a stopping aggregator waits for delivered
// messages; a healthy server drains in milliseconds.
const drainWait = 2 * time.Second

// load reads the snapshot: the index, then every site it names.
// A site's own sequence may be newer than the common one when a tick died
// half-way; handle skips what each site already has. What it loads is
// installed under mu at the end: Figures reads it from another goroutine.
func (a *Aggregator) load(ctx context.Context) error {
	idx, err := a.cfg.Snapshots.Index(ctx, a.cfg.Slice, a.cfg.Slices)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("aggregator: load snapshot: %w", err)
	}
	// Every site the index names must load: a missing one would silently
	// drop its counts, so it is an error, and Run is tried again.
	sites := make(map[string]*Site, len(idx.Sites))
	for _, name := range idx.Sites {
		data, err := a.cfg.Snapshots.Site(ctx, name)
		if err != nil {
			return fmt.Errorf("aggregator: load snapshot of %s: %w", name, err)
		}
		s, err := decodeSnapshot(data)
		if err != nil {
			return fmt.Errorf("aggregator: snapshot of %s: %w", name, err)
		}
		sites[name] = s
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sites, a.seq, a.savedSeq = sites, idx.Seq, idx.Seq
	return nil
}

// nextVersion is the version of a panel published at now after version
// prev: the Unix millisecond, or prev+1 if that is not above prev.
// Dashboards drop an update whose version is not above the last they
// sent, and the version an aggregator loads from its snapshot can be
// below what it published after that snapshot (a crash, a takeover by
// another): counted from the clock, the versions of the next aggregator
// are above them anyway, unless its clock is behind by more than the
// time the takeover took.
func nextVersion(prev uint64, now time.Time) uint64 {
	return max(prev+1, uint64(max(now.UnixMilli(), 0)))
}
