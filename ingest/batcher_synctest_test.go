package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulse-analytics/pulse/event"
	"github.com/pulse-analytics/pulse/ingest/netpoll"
)

// TestDeferredAcksMeetTheirGoals runs the batcher on testing/synctest's
// clock with 50 trackers, each with the protocol core of a real
// connection, sending a batch of 20 events about every second for two
// minutes. The store is in memory (a NATS server's sockets cannot run in
// a bubble). The goals of Config.AckInterval are the assertions: no batch
// is acked before it is stored, every batch is acked within AckInterval
// and two batcher rounds of being sent, acks on a connection are at least
// AckInterval apart (a tenth of the batches), and deferred acks
// leave on the batcher's rounds, together.
func TestDeferredAcksMeetTheirGoals(t *testing.T) {
	const (
		batchInterval = 50 * time.Millisecond
		ackInterval   = 10 * time.Second
		trackers      = 50
		duration      = 2 * time.Minute
	)
	synctest.Test(t, func(t *testing.T) {
		m, err := newMetrics(prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		var (
			storeMu sync.Mutex
			stored  = map[string]uint64{} // the highest seq stored, by session
		)
		publish := func(_, _ string, data []byte) error {
			storeMu.Lock()
			defer storeMu.Unlock()
			var b event.Batch
			return event.DecodeBatches(data, &b, func(b *event.Batch) {
				stored[b.Session] = max(stored[b.Session], b.Seq)
			})
		}
		b := newBatcher(batcherConfig{
			interval: batchInterval, maxBuffered: 1 << 20, nodeID: "n1",
			publish: publish, metrics: m, log: slog.New(slog.DiscardHandler),
		})
		limits := protocolLimits{EventsPerSecond: 200, AckInterval: ackInterval, MaxQueued: maxQueued}
		sims := make([]*simTracker, trackers)
		var wg sync.WaitGroup
		for i := range sims {
			session := fmt.Sprintf("s%d", i)
			sim := &simTracker{
				session: session, p: newProtocol(&limits, true, fmt.Sprintf("v%d", i)),
				b: b, sent: map[uint64]time.Time{},
				store: func() uint64 {
					storeMu.Lock()
					defer storeMu.Unlock()
					return stored[session]
				},
			}
			sim.p.opened()
			sims[i] = sim
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			wg.Go(func() {
				time.Sleep(time.Duration(rng.Int64N(int64(time.Second))))
				for end := time.Now().Add(duration); time.Now().Before(end); {
					sim.send(t)
					time.Sleep(time.Second + time.Duration(rng.Int64N(int64(50*time.Millisecond))))
				}
			})
		}
		wg.Wait()
		// The last deferred acks come within AckInterval.
		time.Sleep(ackInterval + time.Second)
		if err := b.stop(context.Background()); err != nil {
			t.Fatal(err)
		}

		batches, acks := 0, 0
		for _, sim := range sims {
			sim.mu.Lock()
			batches += int(sim.seq)
			acks += len(sim.acks)
			var last time.Time
			acked := uint64(0)
			for _, a := range sim.acks {
				if a.seq > a.storedThen {
					t.Fatalf("%s: ack of %d when %d was the highest stored", sim.session, a.seq, a.storedThen)
				}
				if !last.IsZero() && a.at.Sub(last) < ackInterval {
					t.Errorf("%s: ack %s after the one before, want at least %s", sim.session, a.at.Sub(last), ackInterval)
				}
				if a.deferred && netpoll.UntilRound(a.at, batchInterval, batchInterval/10) != batchInterval {
					t.Errorf("%s: a deferred ack left at %s, not on a batcher round", sim.session, a.at.Format(time.StampMicro))
				}
				for s := acked + 1; s <= a.seq; s++ {
					if wait := a.at.Sub(sim.sent[s]); wait > ackInterval+2*batchInterval {
						t.Errorf("%s: batch %d acked %s after it was sent", sim.session, s, wait)
					}
				}
				last, acked = a.at, max(acked, a.seq)
			}
			if acked != sim.seq {
				t.Errorf("%s: acked up to %d of %d", sim.session, acked, sim.seq)
			}
			sim.mu.Unlock()
		}
		// A tenth of the batches, and each tracker's first and last.
		if want := batches/10 + 2*trackers; acks > want {
			t.Errorf("%d acks for %d batches of %d trackers, want at most %d", acks, batches, trackers, want)
		}
		t.Logf("%d batches, %d acks", batches, acks)
	})
}

// simTracker is a tracker connection without a socket: the protocol core
// and the batcher, with what a connection would send recorded instead.
type simTracker struct {
	session string
	b       *batcher
	store   func() uint64 // the highest seq stored of this session

	mu   sync.Mutex
	p    protocol
	seq  uint64
	sent map[uint64]time.Time
	acks []simAck
}

// simAck is an ack the tracker was sent, and the highest seq stored then.
type simAck struct {
	at         time.Time
	seq        uint64
	storedThen uint64
	deferred   bool
}

func (s *simTracker) send(t *testing.T) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	s.seq++
	a, store, err := s.p.batch(now.UnixNano(), s.seq, 20)
	if err != nil || !store {
		t.Errorf("%s: batch %d: store %v, %v", s.session, s.seq, store, err)
		return
	}
	s.act(a, now, false)
	s.sent[s.seq] = now
	events := make([]event.Event, 20)
	for i := range events {
		events[i] = event.Event{Kind: event.KindMove, T: now.UnixMilli(), Visitor: s.p.visitor}
	}
	batch := event.Batch{Site: "demo", Session: s.session, Visitor: s.p.visitor, Seq: s.seq, Node: "n1", Received: now.UnixMilli(), Events: events}
	if !s.b.addBatch(&batch, s) {
		t.Errorf("%s: the batcher refused batch %d", s.session, s.seq)
		return
	}
	s.act(s.p.storing(0), now, false)
}

// stored is the batcher's report, as conn.stored takes it.
func (s *simTracker) stored(seq uint64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	a, err := s.p.stored(now.UnixNano(), seq, err, 0)
	if err != nil {
		panic(err) // the in-memory store does not fail
	}
	s.act(a, now, false)
}

// ackDeferred is the batcher's report, as conn.ackDeferred takes it.
func (s *simTracker) ackDeferred() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	s.act(s.p.ackTimer(now.UnixNano()), now, true)
}

// act does what conn.act does with acks.
func (s *simTracker) act(a actions, now time.Time, deferred bool) {
	if a.ack {
		s.acks = append(s.acks, simAck{at: now, seq: a.ackSeq, storedThen: s.store(), deferred: deferred})
	}
	if a.ackAt != 0 {
		s.b.ackAt(s, a.ackAt)
	}
}
