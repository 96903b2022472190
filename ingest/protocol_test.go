package ingest

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pulse-analytics/pulse/ingest/wsframe"
)

// t0 is the time the protocol tests start at (Unix ns).
const t0 = int64(1_800_000_000) * int64(time.Second)

var testLimits = protocolLimits{EventsPerSecond: 10, AckInterval: 10 * time.Second, MaxQueued: 8}

// outcome is everything an input can answer with.
type outcome struct {
	actions
	store  bool  // batch: hand it to the batcher
	accept bool  // classic: within the budget
	first  bool  // end: the first
	err    error // compared with errors.Is
}

// input is one thing that happens to a protocol at now.
type input struct {
	name string
	give func(p *protocol, now int64) outcome
}

func opened() input {
	return input{"opened", func(p *protocol, _ int64) outcome { return outcome{actions: p.opened()} }}
}

func classicIn(visitor string) input {
	return input{"classic " + visitor, func(p *protocol, now int64) outcome {
		a, accept := p.classic(now, visitor)
		return outcome{actions: a, accept: accept}
	}}
}

func batchIn(seq uint64, n int) input {
	return input{fmt.Sprintf("batch %d of %d", seq, n), func(p *protocol, now int64) outcome {
		a, store, err := p.batch(now, seq, n)
		return outcome{actions: a, store: store, err: err}
	}}
}

func storing(queued int) input {
	return input{fmt.Sprintf("storing, %d queued", queued), func(p *protocol, _ int64) outcome {
		return outcome{actions: p.storing(queued)}
	}}
}

func stored(seq uint64, queued int) input {
	return input{fmt.Sprintf("stored %d, %d queued", seq, queued), func(p *protocol, now int64) outcome {
		a, err := p.stored(now, seq, nil, queued)
		return outcome{actions: a, err: err}
	}}
}

func storeFailed(seq uint64) input {
	return input{fmt.Sprintf("store of %d failed", seq), func(p *protocol, now int64) outcome {
		a, err := p.stored(now, seq, errors.New("nats: timeout"), 0)
		return outcome{actions: a, err: err}
	}}
}

func ackTimer() input {
	return input{"ack timer", func(p *protocol, now int64) outcome { return outcome{actions: p.ackTimer(now)} }}
}

func controlFrame() input {
	return input{"control frame", func(p *protocol, now int64) outcome { return outcome{err: p.control(now)} }}
}

func reading(queued int) input {
	return input{fmt.Sprintf("%d queued", queued), func(p *protocol, _ int64) outcome {
		return outcome{actions: p.reading(queued)}
	}}
}

func ending() input {
	return input{"end", func(p *protocol, now int64) outcome {
		a, first := p.end(now)
		return outcome{actions: a, first: first}
	}}
}

// step gives in at a time since t0, times times (once if 0), and wants
// the same outcome each time.
type step struct {
	at    time.Duration
	in    input
	times int
	want  outcome
}

func ack(seq uint64) actions { return actions{ack: true, ackSeq: seq} }

func ackAt(at time.Duration) actions { return actions{ackAt: t0 + int64(at)} }

func TestProtocol(t *testing.T) {
	stores := outcome{store: true}
	tests := []struct {
		name    string
		batches bool
		steps   []step
	}{
		{"a batch tracker joins when it is opened", true, []step{
			{in: opened(), want: outcome{actions: actions{join: true}}},
			{in: batchIn(1, 5), want: stores},
		}},
		{"a classic tracker joins with its first frame, once", false, []step{
			{in: opened()},
			{in: classicIn("v9"), want: outcome{actions: actions{join: true}, accept: true}},
			{in: classicIn("v9"), want: outcome{accept: true}},
		}},
		{"classic frames over the budget are dropped until it refills", false, []step{
			{in: opened()},
			{in: classicIn("v9"), want: outcome{actions: actions{join: true}, accept: true}},
			{in: classicIn("v9"), times: 99, want: outcome{accept: true}},
			{in: classicIn("v9"), want: outcome{accept: false}},
			{at: 100 * time.Millisecond, in: classicIn("v9"), want: outcome{accept: true}},
			{at: 100 * time.Millisecond, in: classicIn("v9"), want: outcome{accept: false}},
		}},
		{"the first batch after a quiet interval is acked at once, later ones by one ack at its end", true, []step{
			{in: opened(), want: outcome{actions: actions{join: true}}},
			{in: batchIn(1, 5), want: stores},
			{in: storing(0)},
			{in: stored(1, 0), want: outcome{actions: ack(1)}},
			{at: 9 * time.Second, in: batchIn(2, 5), want: stores},
			{at: 9 * time.Second, in: storing(0)},
			{at: 9 * time.Second, in: stored(2, 0), want: outcome{actions: ackAt(10 * time.Second)}},
			{at: 9500 * time.Millisecond, in: batchIn(3, 5), want: stores},
			{at: 9500 * time.Millisecond, in: storing(0)},
			{at: 9500 * time.Millisecond, in: stored(3, 0)}, // the deferred ack will include it
			{at: 10 * time.Second, in: ackTimer(), want: outcome{actions: ack(3)}},
			{at: 11 * time.Second, in: ackTimer()}, // sent already
			{at: 30 * time.Second, in: batchIn(4, 5), want: stores},
			{at: 30 * time.Second, in: storing(0)},
			{at: 30 * time.Second, in: stored(4, 0), want: outcome{actions: ack(4)}},
		}},
		{"batches stored out of order are acked up to the highest", true, []step{
			{in: batchIn(1, 1), want: stores},
			{in: batchIn(2, 1), want: stores},
			{in: storing(0)},
			{in: storing(0)},
			{in: stored(2, 0), want: outcome{actions: ack(2)}},
			{in: stored(1, 0), want: outcome{actions: ackAt(10 * time.Second)}},
			{at: 10 * time.Second, in: ackTimer(), want: outcome{actions: ack(2)}},
		}},
		{"a re-sent batch that is stored is acked again, not stored", true, []step{
			{in: batchIn(1, 5), want: stores},
			{in: storing(0)},
			{in: stored(1, 0), want: outcome{actions: ack(1)}},
			{at: 20 * time.Second, in: batchIn(1, 5), want: outcome{actions: ack(1)}},
			{at: 21 * time.Second, in: batchIn(1, 5), want: outcome{actions: ackAt(30 * time.Second)}},
		}},
		{"a batch over the event budget is refused and not acked", true, []step{
			{in: batchIn(1, 100), want: stores},
			{in: batchIn(2, 1), want: outcome{err: errRateLimit}},
			{at: time.Second, in: batchIn(2, 10), want: stores},
		}},
		{"a batch that cannot be stored ends the connection", true, []step{
			{in: batchIn(1, 5), want: stores},
			{in: storing(0)},
			{in: storeFailed(1), want: outcome{err: errNotStored}},
		}},
		{"the end sends a deferred ack first, and nothing after it", true, []step{
			{in: batchIn(1, 1), want: stores},
			{in: storing(0)},
			{in: stored(1, 0), want: outcome{actions: ack(1)}},
			{at: time.Second, in: batchIn(2, 1), want: stores},
			{at: time.Second, in: storing(0)},
			{at: time.Second, in: stored(2, 0), want: outcome{actions: ackAt(10 * time.Second)}},
			{at: 3 * time.Second, in: batchIn(3, 1), want: stores},
			{at: 3 * time.Second, in: storing(0)},
			{at: 4 * time.Second, in: ending(), want: outcome{actions: ack(2), first: true}},
			{at: 5 * time.Second, in: ending(), want: outcome{first: false}},
			{at: 6 * time.Second, in: stored(3, 0)},
			{at: 10 * time.Second, in: ackTimer()},
		}},
		{"reading pauses at MaxQueued tasks and resumes at half", true, []step{
			{in: opened(), want: outcome{actions: actions{join: true}}},
			{in: reading(7)},
			{in: reading(8), want: outcome{actions: actions{pause: true}}},
			{in: reading(9)},
			{in: reading(5)},
			{in: reading(4), want: outcome{actions: actions{resume: true}}},
			{in: reading(4)},
		}},
		{"batches being stored count as tasks", true, []step{
			{in: opened(), want: outcome{actions: actions{join: true}}},
			{in: batchIn(1, 1), want: stores},
			{in: storing(6)},
			{in: batchIn(2, 1), want: stores},
			{in: storing(6), want: outcome{actions: actions{pause: true}}},
			{in: stored(1, 4), want: outcome{actions: actions{ack: true, ackSeq: 1}}},
			{in: stored(2, 2), want: outcome{actions: actions{ackAt: t0 + int64(10*time.Second), resume: true}}},
		}},
		{"reading is not paused before the poller reads it", true, []step{
			{in: reading(8)},
			{in: opened(), want: outcome{actions: actions{join: true}}},
			{in: reading(8), want: outcome{actions: actions{pause: true}}},
		}},
		{"an ended connection does not resume reading", true, []step{
			{in: opened(), want: outcome{actions: actions{join: true}}},
			{in: reading(8), want: outcome{actions: actions{pause: true}}},
			{in: ending(), want: outcome{first: true}},
			{in: reading(0)},
		}},
		{"control frames: a burst of 100, then 10 a second", true, []step{
			{in: controlFrame(), times: 100},
			{in: controlFrame(), want: outcome{err: errRateLimit}},
			{at: 100 * time.Millisecond, in: controlFrame()},
			{at: 100 * time.Millisecond, in: controlFrame(), want: outcome{err: errRateLimit}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newProtocol(&testLimits, tt.batches, "v1")
			for i, s := range tt.steps {
				for n := range max(s.times, 1) {
					got := s.in.give(&p, t0+int64(s.at))
					if !errors.Is(got.err, s.want.err) || (got.err == nil) != (s.want.err == nil) {
						t.Fatalf("step %d (%s at %s, #%d): error %v, want %v", i, s.in.name, s.at, n+1, got.err, s.want.err)
					}
					got.err, s.want.err = nil, nil
					if got != s.want {
						t.Fatalf("step %d (%s at %s, #%d):\n got %+v\nwant %+v", i, s.in.name, s.at, n+1, got, s.want)
					}
				}
			}
		})
	}
}

// TestAckGoals runs one tracker's protocol for an hour of simulated time:
// a batch every flush interval (jittered, with quiet spells), stored after a random delay,
// deferred acks delivered after the batcher's next flush. It checks the
// goals the ack interval is chosen for (Config.AckInterval): acks at least
// AckInterval apart, a tenth of a steady tracker's batches acked, every
// stored batch acked within AckInterval and a batcher round, and a
// tracker never holding more than a dozen batches for re-sending (pulse.js
// keeps 50). It never acks a batch that is not stored.
func TestAckGoals(t *testing.T) {
	const (
		flush         = time.Second
		batchInterval = 100 * time.Millisecond
		duration      = time.Hour
	)
	rng := rand.New(rand.NewPCG(1, 2))
	p := newProtocol(&protocolLimits{EventsPerSecond: 200, AckInterval: 10 * time.Second, MaxQueued: 8}, true, "v1")
	p.opened()

	type pending struct {
		at  int64 // when the batcher reports it stored
		seq uint64
	}
	var (
		storing       []pending
		storedAt      = map[uint64]int64{}
		highestStored uint64
		timer         int64 // a deferred ack is delivered then; 0: none
		lastAck       int64
		acked         uint64
		acks, batches int
		maxHeld       int
		spells        int
		nextFlush     = t0
		seq           uint64
	)
	took := func(a actions, now int64) {
		if a.ackAt != 0 {
			if a.ackAt < now {
				t.Fatalf("ack deferred to %d, before now %d", a.ackAt, now)
			}
			// The batcher sends it after its first flush at or after ackAt.
			timer = a.ackAt + rng.Int64N(int64(batchInterval))
		}
		if !a.ack {
			return
		}
		if acks > 0 && time.Duration(now-lastAck) < p.limits.AckInterval {
			t.Fatalf("ack at %s, %s after the last", time.Duration(now-t0), time.Duration(now-lastAck))
		}
		if a.ackSeq > highestStored {
			t.Fatalf("ack of %d before it is stored (stored up to %d)", a.ackSeq, highestStored)
		}
		for s := acked + 1; s <= a.ackSeq; s++ {
			if wait := time.Duration(now - storedAt[s]); wait > p.limits.AckInterval+batchInterval {
				t.Fatalf("batch %d acked %s after it was stored", s, wait)
			}
		}
		acks++
		lastAck, acked = now, a.ackSeq
	}
	for now := t0; now < t0+int64(duration); now += int64(10 * time.Millisecond) {
		if now >= nextFlush {
			seq++
			batches++
			a, store, err := p.batch(now, seq, 20)
			if err != nil || !store {
				t.Fatalf("batch %d: store %v, %v", seq, store, err)
			}
			took(a, now)
			took(p.storing(0), now)
			storing = append(storing, pending{now + rng.Int64N(int64(300*time.Millisecond)), seq})
			nextFlush = now + int64(flush) + rng.Int64N(int64(50*time.Millisecond))
			if rng.IntN(20) == 0 {
				// A tab in the background, or a visitor reading: a
				// quiet spell of up to 15 s.
				nextFlush += rng.Int64N(int64(15 * time.Second))
				spells++
			}
		}
		kept := storing[:0]
		for _, b := range storing {
			if b.at > now {
				kept = append(kept, b)
				continue
			}
			storedAt[b.seq] = now
			highestStored = max(highestStored, b.seq)
			a, err := p.stored(now, b.seq, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			took(a, now)
		}
		storing = kept
		if timer != 0 && now >= timer {
			timer = 0
			took(p.ackTimer(now), now)
		}
		maxHeld = max(maxHeld, int(seq-acked))
	}
	// A steady tracker has a tenth of its batches acked; after a quiet
	// spell the first batch is acked at once, one ack more.
	if want := batches/10 + 1 + spells; acks > want {
		t.Errorf("%d acks for %d batches and %d quiet spells, want at most %d", acks, batches, spells, want)
	}
	if maxHeld > 12 {
		t.Errorf("the tracker held up to %d batches unacked, want at most 12", maxHeld)
	}
	t.Logf("%d batches, %d quiet spells, %d acks, at most %d held for re-sending", batches, spells, acks, maxHeld)
}

func TestCloseReply(t *testing.T) {
	tests := []struct {
		code      int
		echo      int
		leave     string
		echoEmpty bool
	}{
		{websocket.CloseNormalClosure, websocket.CloseNormalClosure, "closed", false},
		{websocket.CloseGoingAway, websocket.CloseGoingAway, "closed", false},
		{wsframe.NoStatus, websocket.CloseNormalClosure, "closed", false},
		{websocket.CloseProtocolError, websocket.CloseProtocolError, "error", false},
		{4000, 4000, "error", false},
	}
	for _, tt := range tests {
		echo, leave := closeReply(tt.code)
		want := websocket.FormatCloseMessage(tt.echo, "")
		if !bytes.Equal(echo, want) || leave != tt.leave {
			t.Errorf("closeReply(%d) = %x, %q; want %x, %q", tt.code, echo, leave, want, tt.leave)
		}
	}
}

func TestCloseFor(t *testing.T) {
	tests := []struct {
		err    error
		code   int
		label  string
		reason string
		ok     bool
	}{
		{wsframe.ErrTooLarge, websocket.CloseMessageTooBig, "too_large", "frames are limited to 4096 bytes", true},
		{fmt.Errorf("%w: reserved bits", wsframe.ErrProtocol), websocket.CloseProtocolError, "protocol", "", true},
		{wsframe.ErrInvalidUTF8, websocket.CloseInvalidFramePayloadData, "invalid_utf8", "", true},
		{fmt.Errorf("%w (1 bytes)", errPendingBudget), websocket.CloseTryAgainLater, "pending_bytes", "", true},
		{errBinary, websocket.CloseUnsupportedData, "binary", "", true},
		{fmt.Errorf("%w: no type", errFrame), websocket.CloseInvalidFramePayloadData, "invalid_frame", "", true},
		{fmt.Errorf("%w: more than 10 events a second", errRateLimit), websocket.ClosePolicyViolation, "rate_limit", "", true},
		{errBufferFull, websocket.CloseTryAgainLater, "buffer_full", "", true},
		{fmt.Errorf("%w: nats: timeout", errNotStored), websocket.CloseTryAgainLater, "", errNotStored.Error(), true},
		{errors.New("something else"), websocket.CloseTryAgainLater, "", errNotStored.Error(), false},
	}
	for _, tt := range tests {
		cl, ok := closeFor(tt.err, 4096)
		reason := tt.reason
		if reason == "" {
			reason = tt.err.Error()
		}
		if cl != (closing{tt.code, reason, tt.label}) || ok != tt.ok {
			t.Errorf("closeFor(%v) = %+v, %v; want {%d %q %q}, %v", tt.err, cl, ok, tt.code, reason, tt.label, tt.ok)
		}
	}
}

func TestSweepVerdict(t *testing.T) {
	cfg := Config{PingInterval: 20 * time.Second, PongWait: 45 * time.Second, FrameWait: 20 * time.Second}
	s := int64(time.Second)
	tests := []struct {
		name                                string
		now, lastRead, pendingSince, pinged int64
		want                                sweepAction
	}{
		{"busy", 100 * s, 99 * s, 0, 0, sweepNone},
		{"idle for the ping interval is pinged", 100 * s, 80 * s, 0, 0, sweepPing},
		{"pinged within the interval is not pinged again", 100 * s, 70 * s, 0, 85 * s, sweepNone},
		{"pinged an interval ago is pinged again", 100 * s, 70 * s, 0, 80 * s, sweepPing},
		{"silent past PongWait times out", 100 * s, 54 * s, 0, 80 * s, sweepTimeout},
		{"a frame that trickles in within FrameWait is waited for", 100 * s, 99 * s, 81 * s, 0, sweepNone},
		{"a frame not whole after FrameWait ends the connection", 100 * s, 99 * s, 79 * s, 0, sweepFrameTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sweepVerdict(cfg, tt.now, tt.lastRead, tt.pendingSince, tt.pinged); got != tt.want {
				t.Errorf("sweepVerdict = %d, want %d", got, tt.want)
			}
		})
	}
}
