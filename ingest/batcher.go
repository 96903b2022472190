package ingest

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/pulse-analytics/pulse/event"
	"github.com/pulse-analytics/pulse/ingest/netpoll"
)

// classicMaxBatch is the most classic events in one batch of a message.
const classicMaxBatch = 500

// maxMessageBytes is about the largest message the batcher publishes,
// well under NATS's 1 MB default payload limit: a site's batches beyond it
// go in a further message.
const maxMessageBytes = 256 << 10

// publishTries is how often a message is published before its batches are
// given up; the same message id makes retries safe.
const publishTries = 3

// batcher gathers what a node's connections send and stores it per site,
// one message per site per BatchInterval: a stored message costs
// the stream, the ingest node and the aggregator far more than the events
// in it, so a message per tracker batch cost more than the batch's events
// (measured: bench/results/history/BENCHMARKS-to-2026-12-07.md). Classic single-event frames are not acked, so they
// wait at most BatchInterval in memory; a tracker batch is acked once the
// message with it is stored. Tracker batches are counted once by the
// aggregator even when a tracker re-sends them (by session and seq, see
// aggregator.SessionState); the message id makes the batcher's own retries
// harmless. Shutdown publishes what is left.
type batcher struct {
	cfg  batcherConfig
	kick chan struct{}
	wake chan struct{} // run's timer is to be set again
	quit chan struct{}
	done chan struct{}
	seq  uint64 // owned by run
	// messages holds emptied *message values for reuse: their buffers
	// serve later flushes.
	messages sync.Pool
	once     sync.Once

	mu      sync.Mutex
	pending map[string]*siteBatches
	n       int // events pending
	// acks are connections' deferred acks, sent after a flush once due
	// (see protocol.ackSoon), so that they leave together.
	acks []dueAck
	// asleep: nothing was pending at run's last round, and its timer is
	// not set; what is added next wakes it. An idle node does not wake
	// every BatchInterval for nothing.
	asleep bool
}

// batcherConfig is what a batcher needs of its node.
type batcherConfig struct {
	interval    time.Duration // Config.BatchInterval
	maxBuffered int           // Config.MaxBuffered
	nodeID      string
	// publish stores one message with a message id (Server.publish).
	publish func(subject, msgID string, data []byte) error
	metrics *metrics
	log     *slog.Logger
}

// dueAck is a connection's deferred ack, due at a time (Unix ns).
type dueAck struct {
	w  ackWaiter
	at int64
}

// ackWaiter is told when its deferred ack is due; a connection.
type ackWaiter interface {
	ackDeferred()
}

// siteBatches is what waits for one site: classic events, and tracker
// batches already in their binary form, in messages that fit.
type siteBatches struct {
	classic []event.Event
	msgs    []*message
}

// waiter is a tracker batch's seq, and who waits for it to be stored.
type waiter struct {
	seq uint64
	w   storeWaiter
}

// storeWaiter is told whether a tracker batch it handed over is stored;
// a connection, which then acks the batch or closes.
type storeWaiter interface {
	stored(seq uint64, err error)
}

func newBatcher(cfg batcherConfig) *batcher {
	b := &batcher{
		cfg:     cfg,
		kick:    make(chan struct{}, 1),
		wake:    make(chan struct{}, 1),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
		pending: make(map[string]*siteBatches),
		asleep:  true,
	}
	b.messages.New = func() any { return newMessage() }
	go b.run()
	return b
}

// site returns what waits for site; b.mu is held.
func (b *batcher) site(site string) *siteBatches {
	sb := b.pending[site]
	if sb == nil {
		sb = &siteBatches{}
		b.pending[site] = sb
	}
	return sb
}

// add queues a classic event for site. It returns false, dropping ev, when
// the buffer is full because publishing cannot keep up.
func (b *batcher) add(site string, ev event.Event) bool {
	b.mu.Lock()
	if b.n >= b.cfg.maxBuffered {
		b.mu.Unlock()
		return false
	}
	sb := b.site(site)
	sb.classic = append(sb.classic, ev)
	b.n++
	b.wakeLocked()
	full := len(sb.classic) >= classicMaxBatch
	b.mu.Unlock()
	if full {
		b.flushSoon()
	}
	return true
}

// addBatch queues a tracker batch, in its binary form: batch is not kept.
// w is told the outcome of storing it, on the batcher's goroutine. It
// returns false when the buffer is full.
func (b *batcher) addBatch(batch *event.Batch, w storeWaiter) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.n+len(batch.Events) > b.cfg.maxBuffered {
		return false
	}
	b.filling(b.site(batch.Site)).add(batch, w)
	b.n += len(batch.Events)
	b.wakeLocked()
	return true
}

// wakeLocked has run set its timer again if it is asleep; b.mu is held.
func (b *batcher) wakeLocked() {
	if !b.asleep {
		return
	}
	b.asleep = false
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// filling returns the message of sb that batches are added to: its last,
// unless that is full.
func (b *batcher) filling(sb *siteBatches) *message {
	if n := len(sb.msgs); n > 0 && !sb.msgs[n-1].full() {
		return sb.msgs[n-1]
	}
	m := b.messages.Get().(*message)
	sb.msgs = append(sb.msgs, m)
	return m
}

// ackAt has the batcher tell w its deferred ack is due after its first
// flush at or after at (Unix ns).
func (b *batcher) ackAt(w ackWaiter, at int64) {
	b.mu.Lock()
	b.acks = append(b.acks, dueAck{w, at})
	b.wakeLocked()
	b.mu.Unlock()
}

// sendDueAcks sends the deferred acks due by now (Unix ns).
func (b *batcher) sendDueAcks(now int64) {
	b.mu.Lock()
	acks := b.acks
	b.acks = nil
	b.mu.Unlock()
	kept := acks[:0]
	for _, a := range acks {
		if a.at > now {
			kept = append(kept, a)
		} else {
			a.w.ackDeferred()
		}
	}
	clear(acks[len(kept):])
	b.mu.Lock()
	b.acks = append(kept, b.acks...)
	b.mu.Unlock()
}

func (b *batcher) flushSoon() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// run stores what waits every BatchInterval, a tenth of it after the
// poller's rounds (see netpoll.Options.Round): what a round reads waits
// for the next store only as long as the round takes, not a whole
// interval more. While nothing waits, events or acks, it sleeps.
func (b *batcher) run() {
	defer close(b.done)
	interval := b.cfg.interval
	untilFlush := func() time.Duration { return netpoll.UntilRound(time.Now(), interval, interval/10) }
	t := time.NewTimer(untilFlush())
	t.Stop() // asleep until something is added
	defer t.Stop()
	for {
		select {
		case <-b.quit:
			b.flush()
			return
		case <-b.wake:
			t.Reset(untilFlush())
		case <-t.C:
			b.flush()
			b.sendDueAcks(time.Now().UnixNano())
			if !b.sleepIfIdle() {
				t.Reset(untilFlush())
			}
		case <-b.kick:
			b.flush()
		}
	}
}

// sleepIfIdle reports whether nothing waits, events or deferred acks,
// and if so marks run asleep.
func (b *batcher) sleepIfIdle() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.asleep = len(b.pending) == 0 && len(b.acks) == 0
	return b.asleep
}

// stop publishes what is queued and ends the batcher.
func (b *batcher) stop(ctx context.Context) error {
	b.once.Do(func() { close(b.quit) })
	select {
	case <-b.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("ingest shutdown: events not yet published: %w", ctx.Err())
	}
}

func (b *batcher) flush() {
	b.mu.Lock()
	pending := b.pending
	if len(pending) == 0 {
		b.mu.Unlock()
		return
	}
	b.pending = make(map[string]*siteBatches, len(pending))
	b.n = 0
	b.mu.Unlock()

	now := time.Now().UnixMilli()
	for site, sb := range pending {
		b.publishSite(site, sb, now)
	}
}

// publishSite stores what waits for site in as few messages as fit:
// classic events join the tracker batches' messages in batches of their
// own, stamped now.
func (b *batcher) publishSite(site string, sb *siteBatches, now int64) {
	for events := sb.classic; len(events) > 0; {
		n := min(len(events), classicMaxBatch)
		b.filling(sb).add(&event.Batch{Site: site, Node: b.cfg.nodeID, Received: now, Events: events[:n]}, nil)
		events = events[n:]
	}
	for _, m := range sb.msgs {
		b.publish(site, m)
		// The publish has returned: nothing holds the payload any more.
		m.reset()
		b.messages.Put(m)
	}
}

// message is a list of batches being put together.
type message struct {
	// body is room for the list's header (listHeaderRoom bytes), then
	// the batches' binary forms.
	body    []byte
	batches int
	// classic counts the classic events in the message, which no one
	// waits for; byKind all its events.
	classic int
	byKind  kindCounts
	waiters []waiter
}

// listHeaderRoom is the most bytes a list header takes (see
// event.AppendListHeader): a byte and a uvarint.
const listHeaderRoom = 1 + binary.MaxVarintLen64

func newMessage() *message { return &message{body: make([]byte, listHeaderRoom, 4<<10)} }

// add appends batch; w is nil for classic events.
func (m *message) add(batch *event.Batch, w storeWaiter) {
	m.body = batch.AppendBinary(m.body)
	m.batches++
	m.byKind.add(batch.Events)
	if w == nil {
		m.classic += len(batch.Events)
	} else {
		m.waiters = append(m.waiters, waiter{batch.Seq, w})
	}
}

func (m *message) full() bool { return len(m.body)-listHeaderRoom >= maxMessageBytes }

// reset empties m, keeping its buffers.
func (m *message) reset() {
	clear(m.waiters)
	*m = message{body: m.body[:listHeaderRoom], waiters: m.waiters[:0]}
}

// payload returns the message to publish: the list header, written into
// the room before the batches, and the batches.
func (m *message) payload() []byte {
	var room [listHeaderRoom]byte
	header := event.AppendListHeader(room[:0], m.batches)
	payload := m.body[listHeaderRoom-len(header):]
	copy(payload, header)
	return payload
}

// publish stores m and tells those waiting for its batches.
func (b *batcher) publish(site string, m *message) {
	if m.batches == 0 {
		return
	}
	b.seq++
	payload := m.payload()
	msgID := "batch:" + b.cfg.nodeID + ":" + strconv.FormatUint(b.seq, 10)
	var err error
	for try := 1; try <= publishTries; try++ {
		if err = b.cfg.publish(event.ActivitySubject(site), msgID, payload); err == nil {
			break
		}
		if try < publishTries {
			// A retry after a timeout holds every later message back:
			// say so, or the stall is a mystery.
			b.cfg.log.Warn("events not stored yet, retrying", "site", site, "try", try, "err", err)
		}
	}
	switch {
	case err == nil:
		b.cfg.metrics.countEvents(site, &m.byKind)
	case m.classic > 0:
		b.cfg.metrics.dropped.WithLabelValues(site, "publish_failed").Add(float64(m.classic))
	}
	for _, w := range m.waiters {
		w.w.stored(w.seq, err)
	}
	if err != nil {
		b.cfg.log.Error("events not stored", "site", site, "batches", m.batches, "err", err)
	}
}
