package ingest

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/pulse-analytics/pulse/event"
)

// classicMaxBatch is the most events in one classic message: about 40 KB of
// JSON, well under NATS's 1 MB default payload limit.
const classicMaxBatch = 500

// classicPublishTries is how often a classic batch is published before it
// is dropped; the same message id makes retries safe.
const classicPublishTries = 3

// classicBatcher gathers classic single-event frames from all connections of
// a node and publishes them per site in batches, so a mouse move is never a
// message of its own. Classic clients get no acks, so a batch waits at most
// ClassicFlushInterval in memory; Shutdown publishes what is left.
type classicBatcher struct {
	s    *Server
	kick chan struct{}
	quit chan struct{}
	done chan struct{}
	seq  uint64 // owned by run
	once sync.Once

	mu      sync.Mutex
	pending map[string][]event.Event
	n       int
}

func newClassicBatcher(s *Server) *classicBatcher {
	b := &classicBatcher{
		s:       s,
		kick:    make(chan struct{}, 1),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
		pending: make(map[string][]event.Event),
	}
	go b.run()
	return b
}

// add queues ev for site. It returns false, dropping ev, when the buffer is
// full because publishing cannot keep up.
func (b *classicBatcher) add(site string, ev event.Event) bool {
	b.mu.Lock()
	if b.n >= b.s.cfg.ClassicMaxBuffered {
		b.mu.Unlock()
		return false
	}
	b.pending[site] = append(b.pending[site], ev)
	b.n++
	full := len(b.pending[site]) >= classicMaxBatch
	b.mu.Unlock()
	if full {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
	return true
}

func (b *classicBatcher) run() {
	defer close(b.done)
	t := time.NewTicker(b.s.cfg.ClassicFlushInterval)
	defer t.Stop()
	for {
		select {
		case <-b.quit:
			b.flush()
			return
		case <-t.C:
			b.flush()
		case <-b.kick:
			b.flush()
		}
	}
}

// stop publishes what is queued and ends the batcher.
func (b *classicBatcher) stop(ctx context.Context) error {
	b.once.Do(func() { close(b.quit) })
	select {
	case <-b.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("ingest shutdown: classic events not yet published: %w", ctx.Err())
	}
}

func (b *classicBatcher) flush() {
	b.mu.Lock()
	pending := b.pending
	if b.n == 0 {
		b.mu.Unlock()
		return
	}
	b.pending = make(map[string][]event.Event, len(pending))
	b.n = 0
	b.mu.Unlock()

	now := time.Now().UnixMilli()
	for site, events := range pending {
		for len(events) > 0 {
			n := min(len(events), classicMaxBatch)
			b.publish(site, events[:n], now)
			events = events[n:]
		}
	}
}

func (b *classicBatcher) publish(site string, events []event.Event, now int64) {
	b.seq++
	batch := event.Batch{Site: site, Node: b.s.cfg.NodeID, Received: now, Events: events}
	payload := batch.AppendBinary(nil)
	msgID := "classic:" + b.s.cfg.NodeID + ":" + strconv.FormatUint(b.seq, 10)
	var err error
	for try := 1; ; try++ {
		err = b.s.publish(event.ActivitySubject(site), msgID, payload)
		if err == nil {
			b.s.metrics.countEvents(site, events)
			return
		}
		if try == classicPublishTries {
			break
		}
	}
	b.s.metrics.dropped.WithLabelValues(site, "publish_failed").Add(float64(len(events)))
	b.s.log.Error("classic batch dropped", "site", site, "events", len(events), "err", err)
}
