package ingest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"

	"github.com/pulse-analytics/pulse/event"
	"github.com/pulse-analytics/pulse/ingest/netpoll"
	"github.com/pulse-analytics/pulse/ingest/wsframe"
)

// writeWait bounds one write to a tracker, so a client that stopped reading
// cannot hold a connection's writer.
const writeWait = 5 * time.Second

// maxQueued is how many tasks (batches to store, frames to write) a
// connection may have waiting; beyond it the node stops reading the
// connection until they are done, so TCP slows the tracker down and a flood
// holds a bounded amount of memory.
const maxQueued = 8

// conn is one tracker connection. Nothing runs for it while it is idle:
// the node's poller calls Data when bytes arrive, and work that blocks
// (storing a batch, writing a frame, publishing presence) goes to a queue
// that one of the node's workers drains while it has something (do).
// gorilla only does the handshake; wsframe reads and writes the frames.
// The order its lock is taken in with the others is in locksordering.txt.
type conn struct {
	s *Server
	// nc is the connection until start hands it to the poller, reg
	// after (nc is dropped then: an idle connection should hold no more
	// than it needs). Only the queue's tasks write.
	nc       net.Conn
	ip       string
	id       string // unique per connection, names presence messages
	site     string
	session  string
	protocol bool // false: classic single-event frames only
	frames   *wsframe.Reader

	// lastRead is when bytes last arrived (Unix ns), stored by Data: the
	// time of every frame it hands on, read once. The sweeper pings and
	// times out idle connections by it. lastPing is the sweeper's.
	lastRead atomic.Int64
	lastPing int64
	// pendingSince is when the frame the reader holds the start of
	// began to arrive (Unix ns), 0 while it holds none: the sweeper ends
	// a connection whose frame takes longer than FrameWait.
	pendingSince atomic.Int64

	// mu guards the fields below: Data runs on a poller, the rest
	// wherever a connection is closed from.
	mu      sync.Mutex
	reg     *netpoll.Registration
	visitor string // set on join
	joined  bool
	ended   bool
	queue   []func()
	working bool
	paused  bool

	// unacked counts batches the batcher is storing; lastAck is the
	// highest batch seq stored.
	unacked int
	lastAck uint64
	// ackedAt is when the last ack was sent (Unix ns); ackDue says the
	// batcher is to send the next (see ackSoonLocked).
	ackedAt int64
	ackDue  bool
	budget  budget
	// controls is the budget of pings and pongs from the tracker.
	controls budget

	// pending is what the reader holds of unfinished frames, counted in
	// the node's Server.pending; frameDone says a message or control
	// frame was completed in the current Data call.
	pending   int
	frameDone bool
	// pong is the payload of the pong queued (pongQueued) to answer the
	// latest ping.
	pong       []byte
	pongQueued bool
}

// controlsPerSecond is the rate of pings and pongs a tracker may send,
// with a burst of ten times that: browsers send none, and other clients
// a ping every few seconds at most.
const controlsPerSecond = 10

// newConn makes a connection; visitor is the tracker's visitor id, unused
// for classic clients, which name theirs in every frame.
func newConn(s *Server, nc net.Conn, ip, site, session, visitor string, protocol bool) *conn {
	perSecond := s.cfg.MaxConnEventsPerSecond
	c := &conn{
		s: s, nc: nc, ip: ip, id: newID(), site: site, session: session, visitor: visitor, protocol: protocol,
		budget: newBudget(perSecond, 10*perSecond), controls: newBudget(controlsPerSecond, 10*controlsPerSecond),
		frames: wsframe.NewReader(int(s.cfg.ReadLimit)),
	}
	c.lastRead.Store(time.Now().UnixNano())
	c.lastPing = c.lastRead.Load()
	return c
}

// start says hello to a tracker and hands the connection to the poller.
// The hello is written here, on the handler's goroutine and before the
// poller can hand on anything the tracker sends: a new tracker's hello
// never waits for a worker, however busy other connections keep them.
func (c *conn) start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.protocol {
		hello, err := json.Marshal(helloMsg{Type: "hello", Session: c.session, rates: c.s.rates()})
		if err != nil {
			return fmt.Errorf("hello: %w", err)
		}
		if err := c.writeFrame(wsframe.Text, hello); err != nil {
			return fmt.Errorf("hello: %w", err)
		}
	}
	reg, err := c.s.poller.Add(c.nc, c)
	if err != nil {
		return err
	}
	c.reg, c.nc = reg, nil
	if c.protocol {
		c.joinLocked(c.visitor)
	}
	return nil
}

// Data is called by the poller with the bytes the tracker sent.
func (c *conn) Data(b []byte) {
	now := time.Now().UnixNano()
	c.lastRead.Store(now)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return
	}
	c.frameDone = false
	err := c.frames.Feed(b, c.message)
	if err == nil {
		err = c.countPendingLocked(now)
	}
	if err != nil {
		c.fail(err)
	}
}

// countPendingLocked counts what the reader now holds of unfinished
// frames in the node's budget (Config.MaxPendingBytes), and notes when the
// frame it holds began; c.mu is held.
func (c *conn) countPendingLocked(now int64) error {
	pending := c.frames.Pending()
	was := c.pending
	if pending != was {
		c.pending = pending
		total := c.s.pending.Add(int64(pending - was))
		if pending > was && total > c.s.cfg.MaxPendingBytes {
			return fmt.Errorf("%w (%d bytes)", errPendingBudget, c.s.cfg.MaxPendingBytes)
		}
	}
	switch {
	case pending == 0:
		c.pendingSince.Store(0)
	case was == 0 || c.frameDone:
		// A frame began in this read.
		c.pendingSince.Store(now)
	}
	return nil
}

// errPendingBudget refuses a frame while the node holds too many bytes of
// frames not yet complete; the tracker is closed with 1013 (try again
// later).
var errPendingBudget = errors.New("the node holds too many unfinished frames")

// Closed is called by the poller when the tracker's socket closed without
// a close frame, or failed.
func (c *conn) Closed(error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.endLocked("error", nil)
}

// errBinary marks a binary message: trackers send text.
var errBinary = errors.New("text frames only")

// errClosing stops reading after the tracker's close frame.
var errClosing = errors.New("closing")

// message handles one message or control frame; c.mu is held.
func (c *conn) message(op wsframe.Opcode, payload []byte) error {
	c.frameDone = true
	switch op {
	case wsframe.Text:
		return c.handle(payload)
	case wsframe.Binary:
		return errBinary
	case wsframe.Ping, wsframe.Pong:
		// A flood of them ends the connection like a flood of events.
		if !c.controls.allow(c.lastRead.Load(), 1) {
			return fmt.Errorf("%w: more than %d control frames a second", errRateLimit, controlsPerSecond)
		}
		if op == wsframe.Ping {
			c.pongLocked(payload)
		}
	case wsframe.Close:
		// The reader let through only a valid close frame.
		code, _, _ := wsframe.ParseClose(payload)
		reason := "closed"
		switch code {
		case websocket.CloseNormalClosure, websocket.CloseGoingAway, wsframe.NoStatus:
		default:
			reason = "error"
		}
		echo := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
		if code != wsframe.NoStatus {
			echo = websocket.FormatCloseMessage(code, "")
		}
		c.endLocked(reason, echo)
		return errClosing
	}
	return nil
}

// pongLocked answers a ping. A pong already queued is answered with the
// latest ping's payload instead (RFC 6455 allows answering only the most
// recent), so however many pings arrive, a connection has at most one pong
// waiting; c.mu is held.
func (c *conn) pongLocked(payload []byte) {
	c.pong = append(c.pong[:0], payload...)
	if c.pongQueued {
		return
	}
	c.pongQueued = true
	c.doLocked(func() {
		c.mu.Lock()
		payload := c.pong
		c.pongQueued, c.pong = false, nil
		c.mu.Unlock()
		c.send(wsframe.Pong, payload)
	})
}

// fail closes the connection for err, the first error of its frames;
// c.mu is held.
func (c *conn) fail(err error) {
	var code int
	var label string
	switch {
	case errors.Is(err, errClosing):
		return
	case errors.Is(err, wsframe.ErrTooLarge):
		code, label = websocket.CloseMessageTooBig, "too_large"
		err = fmt.Errorf("frames are limited to %d bytes", c.s.cfg.ReadLimit)
	case errors.Is(err, wsframe.ErrProtocol):
		code, label = websocket.CloseProtocolError, "protocol"
	case errors.Is(err, wsframe.ErrInvalidUTF8):
		code, label = websocket.CloseInvalidFramePayloadData, "invalid_utf8"
	case errors.Is(err, errPendingBudget):
		code, label = websocket.CloseTryAgainLater, "pending_bytes"
	case errors.Is(err, errBinary):
		code, label = websocket.CloseUnsupportedData, "binary"
	case errors.Is(err, errFrame):
		code, label = websocket.CloseInvalidFramePayloadData, "invalid_frame"
	case errors.Is(err, errRateLimit):
		code, label = websocket.ClosePolicyViolation, "rate_limit"
	case errors.Is(err, errBufferFull):
		code, label = websocket.CloseTryAgainLater, "buffer_full"
	default:
		c.s.log.Warn("tracker frame failed", "site", c.site, "err", err)
		c.closeLocked(websocket.CloseTryAgainLater, "could not store events, reconnect and re-send", "error")
		return
	}
	c.s.metrics.rejected.WithLabelValues(label).Inc()
	c.closeLocked(code, err.Error(), "error")
}

// do queues f to run after the connection's earlier tasks.
func (c *conn) do(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.doLocked(f)
}

func (c *conn) doLocked(f func()) {
	c.queue = append(c.queue, f)
	c.pauseIfBusyLocked()
	if !c.working {
		c.working = true
		c.s.workers.schedule(c)
	}
}

// pauseIfBusyLocked stops reading while maxQueued tasks or batches wait.
func (c *conn) pauseIfBusyLocked() {
	if len(c.queue)+c.unacked >= maxQueued && !c.paused && c.reg != nil {
		c.paused = true
		c.reg.Pause()
	}
}

// resumeIfIdleLocked reads again once half of them are done.
func (c *conn) resumeIfIdleLocked() {
	if c.paused && len(c.queue)+c.unacked <= maxQueued/2 && !c.ended {
		c.paused = false
		c.reg.Resume()
	}
}

// work runs the queued tasks and returns when there are none.
func (c *conn) work() {
	for {
		c.mu.Lock()
		if len(c.queue) == 0 {
			c.working = false
			c.queue = nil
			c.mu.Unlock()
			return
		}
		f := c.queue[0]
		c.queue[0] = nil
		c.queue = c.queue[1:]
		c.resumeIfIdleLocked()
		c.mu.Unlock()
		f()
	}
}

// closeWith sends a close frame with code and reason, after the frames
// already queued, and closes the connection. leaveReason says why in the
// leave event. Safe to call from any goroutine, more than once.
func (c *conn) closeWith(code int, reason, leaveReason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closeLocked(code, reason, leaveReason)
}

func (c *conn) closeLocked(code int, reason, leaveReason string) {
	// A close reason must fit a control frame (125 bytes with the code).
	c.endLocked(leaveReason, websocket.FormatCloseMessage(code, truncate(reason, 123)))
}

// endLocked stops reading and queues the end of the connection: the close
// frame (if any), closing the socket, the leave, and forgetting it. Only
// the first call counts.
func (c *conn) endLocked(leaveReason string, closeFrame []byte) {
	if c.ended {
		return
	}
	c.ended = true // Data ignores what still arrives
	c.s.pending.Add(-int64(c.pending))
	c.pending = 0
	c.pendingSince.Store(0)
	if c.ackDue {
		// Before the close frame: the tracker need not re-send what
		// is stored.
		c.ackLocked()
	}
	c.doLocked(func() {
		written := closeFrame != nil && c.writeFrame(wsframe.Close, closeFrame) == nil
		switch {
		case c.reg == nil: // not started
			_ = c.nc.Close()
		case written:
			c.reg.Linger(lingerWait)
		default:
			c.reg.Close()
		}
		c.mu.Lock()
		joined := c.joined
		c.mu.Unlock()
		if joined {
			c.leave(leaveReason)
		}
		c.s.unregister(c)
	})
}

// handle handles a text message; c.mu is held.
func (c *conn) handle(data []byte) error {
	var f *batchFrame // only batches need one: a classic client never says hello
	if c.protocol {
		f = c.s.batchFrames.Get().(*batchFrame)
		defer c.s.batchFrames.Put(f)
	}
	now := c.lastRead.Load() / int64(time.Millisecond)
	d, err := decodeFrame(data, c.protocol, c.visitor, f, now, c.s.cfg.MaxBatchEvents)
	switch {
	case err != nil:
		return err
	case d.batch:
		return c.storeBatch(now, d.seq, d.events)
	default:
		return c.classic(d.visitor, d.x, d.y)
	}
}

// classic accepts a classic frame's move; c.mu is held.
func (c *conn) classic(visitor string, x, y int32) error {
	if !c.joined {
		c.joinLocked(visitor)
	}
	now := c.lastRead.Load()
	if !c.budget.allow(now, 1) {
		// Classic clients cannot be told to slow down or re-send, so
		// frames over the limit are dropped and counted.
		c.s.metrics.rejected.WithLabelValues("rate_limit").Inc()
		return nil
	}
	c.s.accepted.Add(1)
	ev := event.Event{Kind: event.KindMove, T: now / int64(time.Millisecond), X: x, Y: y, Visitor: visitor}
	if !c.s.batcher.add(c.site, ev) {
		c.s.metrics.dropped.WithLabelValues(c.site, "buffer_full").Inc()
	}
	return nil
}

// storeBatch has the batcher store a tracker batch received at now, and
// acks it only once it is stored, so an acked batch is never lost. A
// re-sent batch (same session and seq) is counted once by the aggregator.
// c.mu is held.
func (c *conn) storeBatch(now int64, seq uint64, events []event.Event) error {
	if !c.budget.allow(c.lastRead.Load(), len(events)) {
		// The batch is not acked: the tracker keeps it and re-sends it
		// after reconnecting, so closing loses nothing.
		return fmt.Errorf("%w: more than %d events a second", errRateLimit, c.s.cfg.MaxConnEventsPerSecond)
	}
	if seq <= c.lastAck {
		// Stored already: the tracker missed the ack.
		c.ackSoonLocked()
		return nil
	}
	b := event.Batch{
		Site: c.site, Session: c.session, Visitor: c.visitor, Seq: seq,
		Node: c.s.cfg.NodeID, Received: now, Events: events,
	}
	if !c.s.batcher.addBatch(&b, c) {
		return errBufferFull
	}
	c.s.accepted.Add(int64(len(events)))
	c.unacked++
	c.pauseIfBusyLocked()
	return nil
}

// stored is called by the batcher once batch seq is stored, or not.
func (c *conn) stored(seq uint64, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.unacked--
	c.resumeIfIdleLocked()
	if err != nil {
		c.s.log.Warn("tracker batch not stored", "site", c.site, "err", err)
		c.closeLocked(websocket.CloseTryAgainLater, "could not store events, reconnect and re-send", "error")
		return
	}
	c.lastAck = max(c.lastAck, seq)
	c.ackSoonLocked()
}

// ackSoonLocked acks lastAck now if no ack was sent within AckInterval,
// or else has the batcher send the ack once that much time has passed,
// with the acks of other connections (see Config.AckInterval); c.mu is
// held.
func (c *conn) ackSoonLocked() {
	if c.ackDue || c.ended {
		// The deferred ack will include it; or the close frame is on
		// its way, and nothing may follow it (the tracker re-sends).
		return
	}
	due := c.ackedAt + int64(c.s.cfg.AckInterval)
	if time.Now().UnixNano() >= due {
		c.ackLocked()
		return
	}
	c.ackDue = true
	c.s.batcher.ackAt(c, due)
}

// ackDeferred sends the ack that ackSoonLocked put off, unless it has been
// sent already.
func (c *conn) ackDeferred() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ackDue && !c.ended {
		c.ackLocked()
	}
}

// ackLocked acks every batch up to lastAck and clears a deferred ack.
// The batcher stores batches of many connections at once: with io_uring
// their acks leave together in the poller's next round, without a worker;
// otherwise the queue writes it. c.mu is held.
func (c *conn) ackLocked() {
	c.ackedAt = time.Now().UnixNano()
	c.ackDue = false
	payload, _ := json.Marshal(ackMsg{Type: "ack", Seq: c.lastAck})
	if c.ended || c.reg == nil || !c.reg.Send(wsframe.AppendFrame(nil, wsframe.Text, payload)) {
		c.doLocked(func() { c.send(wsframe.Text, payload) })
	}
}

// joinLocked queues the join of visitor; c.mu is held.
func (c *conn) joinLocked(visitor string) {
	c.visitor = visitor
	c.joined = true
	c.doLocked(func() { c.presence(event.Join, "", visitor) })
}

func (c *conn) leave(reason string) {
	c.mu.Lock()
	visitor := c.visitor
	c.mu.Unlock()
	c.presence(event.Leave, reason, visitor)
}

func (c *conn) presence(kind event.PresenceKind, reason, visitor string) {
	p := event.Presence{
		Kind: kind, Site: c.site, Conn: c.id, Session: c.session, Visitor: visitor,
		Node: c.s.cfg.NodeID, Reason: reason, Time: time.Now().UnixMilli(),
	}
	payload, _ := json.Marshal(&p)
	// A lost leave would keep a visitor present for ever, so presence is
	// retried through a NATS failover (about half a minute); the message
	// id makes a retry of a stored message harmless.
	wait := 250 * time.Millisecond
	for try := 1; ; try++ {
		err := c.s.publish(event.PresenceSubject(c.site), c.id+":"+string(kind), payload)
		if err == nil {
			return
		}
		giveUp := try == presenceTries || errors.Is(err, nats.ErrConnectionClosed)
		if !giveUp {
			select {
			case <-time.After(wait):
			case <-c.s.publishing.Done():
				giveUp = true
			}
		}
		if giveUp {
			c.s.metrics.dropped.WithLabelValues(c.site, "presence").Inc()
			c.s.log.Warn("presence not published", "site", c.site, "kind", kind, "tries", try, "err", err)
			return
		}
		wait = min(2*wait, 4*time.Second)
	}
}

// presenceTries bounds the attempts to publish a join or leave.
const presenceTries = 10

// errBufferFull refuses a tracker batch while the node has too many events
// waiting to be stored; it is closed with 1013 (try again later) and
// re-sends the batch.
var errBufferFull = errors.New("too many events waiting to be stored, reconnect and re-send")

// errRateLimit marks a connection over its event rate; it is closed with
// 1008 (policy violation).
var errRateLimit = errors.New("event rate limit exceeded")

// lingerWait bounds how long a closing connection waits for the tracker to
// close its side after the close frame (see netpoll.Registration.Linger).
const lingerWait = 500 * time.Millisecond

// write sends v as a JSON text frame; it runs in the connection's queue,
// the only writer of data frames.
func (c *conn) write(v any) {
	data, err := json.Marshal(v)
	if err != nil {
		c.s.log.Error("tracker message not encoded", "err", err)
		return
	}
	c.send(wsframe.Text, data)
}

// send writes a frame, and ends the connection if it cannot: its socket
// failed, or the tracker stopped reading. A tracker's frames are small, so
// a tracker that cannot take one in writeWait has left a full socket
// buffer unread. No close frame follows (it would wait as long again).
func (c *conn) send(op wsframe.Opcode, payload []byte) {
	err := c.writeFrame(op, payload)
	if err == nil {
		return
	}
	if errors.Is(err, netpoll.ErrWriteTimeout) || errors.Is(err, os.ErrDeadlineExceeded) {
		c.s.metrics.rejected.WithLabelValues("not_reading").Inc()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.endLocked("error", nil)
}

// writeFrame writes one frame within writeWait; only the queue's tasks
// write, one at a time (and start, before the queue has any).
func (c *conn) writeFrame(op wsframe.Opcode, payload []byte) error {
	frame := wsframe.AppendFrame(make([]byte, 0, len(payload)+10), op, payload)
	if c.reg == nil { // not started
		_ = c.nc.SetWriteDeadline(time.Now().Add(writeWait))
		_, err := c.nc.Write(frame)
		return err
	}
	return c.reg.Write(frame, writeWait)
}

// sweep pings connections idle for PingInterval and ends those that sent
// nothing, not even a pong, for PongWait.
func (c *conn) sweep(now int64) {
	idle := time.Duration(now - c.lastRead.Load())
	since := c.pendingSince.Load()
	switch {
	case since != 0 && time.Duration(now-since) > c.s.cfg.FrameWait:
		// Bytes that trickle in keep the connection from being idle,
		// but a frame must be whole in time.
		c.s.metrics.rejected.WithLabelValues("frame_timeout").Inc()
		c.closeWith(websocket.ClosePolicyViolation, fmt.Sprintf("a frame must arrive within %s", c.s.cfg.FrameWait), "timeout")
	case idle > c.s.cfg.PongWait:
		// The tracker is gone or stuck: no close frame, no lingering.
		c.s.metrics.rejected.WithLabelValues("timeout").Inc()
		c.mu.Lock()
		c.endLocked("timeout", nil)
		c.mu.Unlock()
	case idle >= c.s.cfg.PingInterval && time.Duration(now-c.lastPing) >= c.s.cfg.PingInterval:
		c.lastPing = now
		c.do(func() { c.send(wsframe.Ping, nil) })
	}
}
