package ingest

import (
	"errors"
	"fmt"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pulse-analytics/pulse/ingest/wsframe"
)

// protocol is the protocol state of one tracker connection, and nothing
// else: whether the tracker has joined, which batches it sent are being
// stored and which are acked, when the last ack went, its rate budgets,
// whether its reading is paused, whether it has ended. It does no I/O,
// takes no lock and reads no clock: the connection (conn, the shell) hands
// it each input with the time, under conn.mu, and carries out the actions
// it answers with. So every rule of the protocol is tested as a table of
// inputs and actions (protocol_test.go), with time as a value.
//
// A node holds one protocol for every connection it has, so the fields
// are ordered to leave no padding, and the limits are the node's.
type protocol struct {
	limits  *protocolLimits
	visitor string

	// unacked counts batches being stored; lastAck is the highest seq
	// stored.
	unacked int
	lastAck uint64
	// ackedAt is when the last ack was sent (Unix ns); ackDue says an ack
	// is deferred until AckInterval after it.
	ackedAt int64

	// events is the budget of events, controls of pings and pongs.
	events, controls budget

	ackDue bool
	// batches: the tracker speaks the batch protocol (hello, batches,
	// acks, rates); false, it sends classic single-event frames only.
	batches bool
	// open: the connection is read by the poller, so its reading can be
	// paused. joined: its join is published (or on its way).
	open, joined, ended, paused bool
}

// protocolLimits are the limits a protocol keeps, from the node's Config.
type protocolLimits struct {
	// EventsPerSecond is the sustained event rate (Config.MaxConnEventsPerSecond),
	// with a burst of ten times that.
	EventsPerSecond int
	// AckInterval is the least time between two acks (Config.AckInterval).
	AckInterval time.Duration
	// MaxQueued bounds the tasks and unstored batches a connection has
	// waiting before its reading is paused (maxQueued).
	MaxQueued int
}

// controlsPerSecond is the rate of pings and pongs a tracker may send,
// with a burst of ten times that (controlRate): browsers send none, and
// other clients a ping every few seconds at most.
const controlsPerSecond = 10

var controlRate = rate{perSecond: controlsPerSecond, burst: 10 * controlsPerSecond}

// eventRate is the rate of a connection's events budget: EventsPerSecond,
// with a burst of ten times that.
func (l *protocolLimits) eventRate() rate {
	return newRate(l.EventsPerSecond, 10*l.EventsPerSecond)
}

// actions is what the connection is to do after an input, in the order of
// the fields.
type actions struct {
	// join: publish the join of the protocol's visitor.
	join bool
	// ack: send the ack of every batch up to ackSeq, now.
	ack    bool
	ackSeq uint64
	// ackAt: have the batcher report ackTimer at this time (Unix ns);
	// 0, no.
	ackAt int64
	// pause and resume the reading of the socket.
	pause, resume bool
}

// newProtocol starts the protocol of a tracker; visitor is a batch
// tracker's visitor id (classic trackers name theirs in every frame).
func newProtocol(limits *protocolLimits, batches bool, visitor string) protocol {
	return protocol{
		limits: limits, batches: batches, visitor: visitor,
		events:   newBudget(limits.eventRate()),
		controls: newBudget(controlRate),
	}
}

// opened says the connection is handed to the poller. A batch tracker,
// greeted with its hello just before, joins now; a classic one joins with
// its first frame, which names its visitor.
func (p *protocol) opened() actions {
	p.open = true
	if !p.batches || p.joined {
		return actions{}
	}
	p.joined = true
	return actions{join: true}
}

// classic says a classic frame of visitor's arrived at now. It reports
// whether its event is within the budget: classic clients cannot be told
// to slow down or re-send, so frames over it are dropped.
func (p *protocol) classic(now int64, visitor string) (a actions, accept bool) {
	if !p.joined {
		p.visitor, p.joined = visitor, true
		a.join = true
	}
	return a, p.events.allow(p.limits.eventRate(), now, 1)
}

// batch says batch seq of n events arrived at now. store reports that it
// is new and is to be handed to the batcher (then say storing); a batch
// stored already (the tracker missed its ack) is acked again instead.
// Over the budget it is refused with errRateLimit and not acked: the
// tracker keeps it and re-sends it after reconnecting, so closing loses
// nothing.
func (p *protocol) batch(now int64, seq uint64, n int) (a actions, store bool, err error) {
	if !p.events.allow(p.limits.eventRate(), now, n) {
		return a, false, fmt.Errorf("%w: more than %d events a second", errRateLimit, p.limits.EventsPerSecond)
	}
	if seq <= p.lastAck {
		return p.ackSoon(now), false, nil
	}
	return a, true, nil
}

// storing says the batcher took a batch; queued is the connection's
// tasks waiting.
func (p *protocol) storing(queued int) actions {
	p.unacked++
	return p.reading(queued)
}

// stored says the batcher stored batch seq at now, or could not (err):
// then the connection ends with errNotStored, and the tracker re-sends.
func (p *protocol) stored(now int64, seq uint64, err error, queued int) (actions, error) {
	p.unacked--
	a := p.reading(queued)
	if err != nil {
		return a, fmt.Errorf("%w: %w", errNotStored, err)
	}
	p.lastAck = max(p.lastAck, seq)
	ack := p.ackSoon(now)
	ack.resume = a.resume
	return ack, nil
}

// ackSoon acks lastAck at once if no ack went within AckInterval, or
// defers the ack until then: the batcher sends it with the acks of other
// connections.
func (p *protocol) ackSoon(now int64) actions {
	if p.ackDue || p.ended {
		// The deferred ack will include it; or the close frame is on
		// its way, and nothing may follow it (the tracker re-sends).
		return actions{}
	}
	due := p.ackedAt + int64(p.limits.AckInterval)
	if now >= due {
		return p.ackNow(now)
	}
	p.ackDue = true
	return actions{ackAt: due}
}

// ackTimer says the time of a deferred ack (actions.ackAt) has come.
func (p *protocol) ackTimer(now int64) actions {
	if !p.ackDue || p.ended {
		return actions{}
	}
	return p.ackNow(now)
}

func (p *protocol) ackNow(now int64) actions {
	p.ackedAt, p.ackDue = now, false
	return actions{ack: true, ackSeq: p.lastAck}
}

// control says a ping or pong arrived at now. A flood of them ends the
// connection like a flood of events.
func (p *protocol) control(now int64) error {
	if !p.controls.allow(controlRate, now, 1) {
		return fmt.Errorf("%w: more than %d control frames a second", errRateLimit, controlsPerSecond)
	}
	return nil
}

// reading says whether the connection's reading is to pause, with
// queued tasks waiting: it pauses while MaxQueued tasks and batches being
// stored wait, so TCP slows the tracker down and a flood holds a bounded
// amount of memory, and reads again once half of them are done.
func (p *protocol) reading(queued int) actions {
	busy := queued + p.unacked
	switch {
	case p.open && !p.paused && busy >= p.limits.MaxQueued:
		p.paused = true
		return actions{pause: true}
	case p.paused && !p.ended && busy <= p.limits.MaxQueued/2:
		p.paused = false
		return actions{resume: true}
	}
	return actions{}
}

// end says the connection ends. first reports that it had not ended yet;
// only the first end counts. A deferred ack goes before the close frame:
// the tracker need not re-send what is stored.
func (p *protocol) end(now int64) (a actions, first bool) {
	if p.ended {
		return a, false
	}
	if p.ackDue {
		a = p.ackNow(now)
	}
	p.ended = true
	return a, true
}

// closeReply answers a tracker's close frame with code (the reader lets
// through only valid ones): the close frame to echo, and the reason the
// leave event gives.
func closeReply(code int) (echo []byte, leaveReason string) {
	leaveReason = "closed"
	switch code {
	case websocket.CloseNormalClosure, websocket.CloseGoingAway, wsframe.NoStatus:
	default:
		leaveReason = "error"
	}
	if code == wsframe.NoStatus {
		return websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), leaveReason
	}
	return websocket.FormatCloseMessage(code, ""), leaveReason
}

// closing is how a connection is closed for an error: the close frame's
// code and reason, and the label it is counted by in
// pulse_ingest_rejected_total ("" for none).
type closing struct {
	code   int
	reason string
	label  string
}

// closeFor returns how to close a connection for err, the first error of
// its frames or batches; readLimit is the node's Config.ReadLimit. ok is
// false for an error it does not know, which the connection logs and
// closes as errNotStored.
func closeFor(err error, readLimit int64) (cl closing, ok bool) {
	switch {
	case errors.Is(err, wsframe.ErrTooLarge):
		return closing{websocket.CloseMessageTooBig, fmt.Sprintf("frames are limited to %d bytes", readLimit), "too_large"}, true
	case errors.Is(err, wsframe.ErrProtocol):
		return closing{websocket.CloseProtocolError, err.Error(), "protocol"}, true
	case errors.Is(err, wsframe.ErrInvalidUTF8):
		return closing{websocket.CloseInvalidFramePayloadData, err.Error(), "invalid_utf8"}, true
	case errors.Is(err, errPendingBudget):
		return closing{websocket.CloseTryAgainLater, err.Error(), "pending_bytes"}, true
	case errors.Is(err, errBinary):
		return closing{websocket.CloseUnsupportedData, err.Error(), "binary"}, true
	case errors.Is(err, errFrame):
		return closing{websocket.CloseInvalidFramePayloadData, err.Error(), "invalid_frame"}, true
	case errors.Is(err, errRateLimit):
		return closing{websocket.ClosePolicyViolation, err.Error(), "rate_limit"}, true
	case errors.Is(err, errBufferFull):
		return closing{websocket.CloseTryAgainLater, err.Error(), "buffer_full"}, true
	case errors.Is(err, errNotStored):
		// The store failed, not the tracker: nothing is counted as
		// rejected.
		return closing{websocket.CloseTryAgainLater, errNotStored.Error(), ""}, true
	}
	return closing{websocket.CloseTryAgainLater, errNotStored.Error(), ""}, false
}

// errNotStored closes a tracker whose batch could not be stored, with 1013
// (try again later): it re-sends the batches not acked.
var errNotStored = errors.New("could not store events, reconnect and re-send")

// errBufferFull refuses a tracker batch while the node has too many events
// waiting to be stored; it is closed with 1013 (try again later) and
// re-sends the batch.
var errBufferFull = errors.New("too many events waiting to be stored, reconnect and re-send")

// errRateLimit marks a connection over its event rate; it is closed with
// 1008 (policy violation).
var errRateLimit = errors.New("event rate limit exceeded")

// errBinary marks a binary message: trackers send text.
var errBinary = errors.New("text frames only")

// sweepAction is what the sweeper is to do with a connection.
type sweepAction int

const (
	sweepNone sweepAction = iota
	// sweepPing: the connection has been idle for PingInterval, and was
	// not pinged within it.
	sweepPing
	// sweepTimeout: nothing, not even a pong, arrived for PongWait. The
	// tracker is gone or stuck: no close frame, no lingering.
	sweepTimeout
	// sweepFrameTimeout: a frame began to arrive more than FrameWait
	// ago and is not whole. Bytes that trickle in keep a connection from
	// being idle, but a frame must be whole in time.
	sweepFrameTimeout
)

// sweepVerdict judges a connection at now (Unix ns, like the others):
// lastRead is when bytes last arrived, pendingSince when the frame the
// reader holds the start of began (0: none), lastPing when it was last
// pinged.
func sweepVerdict(cfg Config, now, lastRead, pendingSince, lastPing int64) sweepAction {
	idle := time.Duration(now - lastRead)
	switch {
	case pendingSince != 0 && time.Duration(now-pendingSince) > cfg.FrameWait:
		return sweepFrameTimeout
	case idle > cfg.PongWait:
		return sweepTimeout
	case idle >= cfg.PingInterval && time.Duration(now-lastPing) >= cfg.PingInterval:
		return sweepPing
	}
	return sweepNone
}
