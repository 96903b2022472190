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

// conn is one tracker connection: the shell around its protocol state
// (protocol.go), which decides; conn does the I/O. Nothing runs for it
// while it is idle: the node's poller calls Data when bytes arrive, and
// work that blocks (storing a batch, writing a frame, publishing presence)
// goes to a queue that one of the node's workers drains while it has
// something (do). gorilla only does the handshake; wsframe reads and
// writes the frames. The order its lock is taken in with the others is in
// locksordering.txt.
type conn struct {
	s *Server
	// nc is the connection until start hands it to the poller, reg
	// after (nc is dropped then: an idle connection should hold no more
	// than it needs). Only the queue's tasks write.
	nc      net.Conn
	ip      string
	id      string // unique per connection, names presence messages
	site    string
	session string
	frames  *wsframe.Reader

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
	mu    sync.Mutex
	reg   *netpoll.Registration
	proto protocol
	queue []func()
	// pending is what the reader holds of unfinished frames, counted in
	// the node's Server.pending.
	pending int
	// pong is the payload of the pong queued (pongQueued) to answer the
	// latest ping.
	pong []byte

	// The flags last, together, so that they take one word: a task of
	// the queue runs (working); a message or control frame was completed
	// in the current Data call (frameDone); a pong is queued.
	working, frameDone, pongQueued bool
}

// newConn makes a connection; visitor is the tracker's visitor id, unused
// for classic clients, which name theirs in every frame.
func newConn(s *Server, nc net.Conn, ip, site, session, visitor string, batches bool) *conn {
	c := &conn{
		s: s, nc: nc, ip: ip, id: newID(), site: site, session: session,
		proto:  newProtocol(&s.limits, batches, visitor),
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
	if c.proto.batches {
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
	c.act(c.proto.opened())
	return nil
}

// Data is called by the poller with the bytes the tracker sent.
func (c *conn) Data(b []byte) {
	now := time.Now().UnixNano()
	c.lastRead.Store(now)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proto.ended {
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
		if err := c.proto.control(c.lastRead.Load()); err != nil {
			return err
		}
		if op == wsframe.Ping {
			c.pongLocked(payload)
		}
	case wsframe.Close:
		// The reader let through only a valid close frame.
		code, _, _ := wsframe.ParseClose(payload)
		echo, reason := closeReply(code)
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

// fail closes the connection for err, the first error of its frames or
// batches (see closeFor); c.mu is held.
func (c *conn) fail(err error) {
	if errors.Is(err, errClosing) {
		return
	}
	cl, ok := closeFor(err, c.s.cfg.ReadLimit)
	if !ok {
		c.s.log.Warn("tracker frame failed", "site", c.site, "err", err)
	}
	if cl.label != "" {
		c.s.metrics.rejected.WithLabelValues(cl.label).Inc()
	}
	c.closeLocked(cl.code, cl.reason, "error")
}

// act carries out what the protocol answered; c.mu is held.
func (c *conn) act(a actions) {
	if a.join {
		visitor := c.proto.visitor
		c.doLocked(func() { c.presence(event.Join, "", visitor) })
	}
	if a.ack {
		c.ackLocked(a.ackSeq)
	}
	if a.ackAt != 0 {
		c.s.batcher.ackAt(c, a.ackAt)
	}
	switch {
	case a.pause:
		c.reg.Pause()
	case a.resume:
		c.reg.Resume()
	}
}

// do queues f to run after the connection's earlier tasks.
func (c *conn) do(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.doLocked(f)
}

func (c *conn) doLocked(f func()) {
	c.queue = append(c.queue, f)
	c.act(c.proto.reading(len(c.queue)))
	if !c.working {
		c.working = true
		c.s.workers.schedule(c)
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
		c.act(c.proto.reading(len(c.queue)))
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
	a, first := c.proto.end(time.Now().UnixNano())
	if !first {
		return
	}
	// Data ignores what still arrives.
	c.s.pending.Add(-int64(c.pending))
	c.pending = 0
	c.pendingSince.Store(0)
	c.act(a) // an ack due goes before the close frame
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
		joined, visitor := c.proto.joined, c.proto.visitor
		c.mu.Unlock()
		if joined {
			c.presence(event.Leave, leaveReason, visitor)
		}
		c.s.unregister(c)
	})
}

// handle handles a text message; c.mu is held.
func (c *conn) handle(data []byte) error {
	var f *batchFrame // only batches need one: a classic client never says hello
	if c.proto.batches {
		f = c.s.batchFrames.Get().(*batchFrame)
		defer c.s.batchFrames.Put(f)
	}
	now := c.lastRead.Load()
	d, err := decodeFrame(data, c.proto.batches, c.proto.visitor, f, now/int64(time.Millisecond), c.s.cfg.MaxBatchEvents)
	switch {
	case err != nil:
		return err
	case d.batch:
		return c.storeBatch(now, d.seq, d.events)
	default:
		c.classic(now, d.visitor, d.x, d.y)
		return nil
	}
}

// classic accepts a classic frame's move, received at now (Unix ns);
// c.mu is held.
func (c *conn) classic(now int64, visitor string, x, y int32) {
	a, accept := c.proto.classic(now, visitor)
	c.act(a)
	if !accept {
		c.s.metrics.rejected.WithLabelValues("rate_limit").Inc()
		return
	}
	c.s.accepted.Add(1)
	ev := event.Event{Kind: event.KindMove, T: now / int64(time.Millisecond), X: x, Y: y, Visitor: visitor}
	if !c.s.batcher.add(c.site, ev) {
		c.s.metrics.dropped.WithLabelValues(c.site, "buffer_full").Inc()
	}
}

// storeBatch has the batcher store a tracker batch received at now (Unix
// ns), and acks it only once it is stored, so an acked batch is never
// lost. A re-sent batch (same session and seq) is counted once by the
// aggregator. c.mu is held.
func (c *conn) storeBatch(now int64, seq uint64, events []event.Event) error {
	a, store, err := c.proto.batch(now, seq, len(events))
	c.act(a)
	if !store {
		return err
	}
	b := event.Batch{
		Site: c.site, Session: c.session, Visitor: c.proto.visitor, Seq: seq,
		Node: c.s.cfg.NodeID, Received: now / int64(time.Millisecond), Events: events,
	}
	if !c.s.batcher.addBatch(&b, c) {
		return errBufferFull
	}
	c.s.accepted.Add(int64(len(events)))
	c.act(c.proto.storing(len(c.queue)))
	return nil
}

// stored is called by the batcher once batch seq is stored, or not.
func (c *conn) stored(seq uint64, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, err := c.proto.stored(time.Now().UnixNano(), seq, err, len(c.queue))
	c.act(a)
	if err != nil {
		c.s.log.Warn("tracker batch not stored", "site", c.site, "err", err)
		c.fail(err)
	}
}

// ackDeferred is called by the batcher when an ack the protocol deferred
// (actions.ackAt) is due.
func (c *conn) ackDeferred() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.act(c.proto.ackTimer(time.Now().UnixNano()))
}

// ackLocked acks every batch up to seq. The batcher stores batches of
// many connections at once: with io_uring their acks leave together in
// the poller's next round, without a worker; otherwise the queue writes
// it. c.mu is held.
func (c *conn) ackLocked(seq uint64) {
	payload, _ := json.Marshal(ackMsg{Type: "ack", Seq: seq})
	if c.proto.ended || c.reg == nil || !c.reg.Send(wsframe.AppendFrame(nil, wsframe.Text, payload)) {
		c.doLocked(func() { c.send(wsframe.Text, payload) })
	}
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
// nothing, not even a pong, for PongWait, or whose frame takes longer
// than FrameWait (see sweepVerdict).
func (c *conn) sweep(now int64) {
	switch sweepVerdict(c.s.cfg, now, c.lastRead.Load(), c.pendingSince.Load(), c.lastPing) {
	case sweepFrameTimeout:
		c.s.metrics.rejected.WithLabelValues("frame_timeout").Inc()
		c.closeWith(websocket.ClosePolicyViolation, fmt.Sprintf("a frame must arrive within %s", c.s.cfg.FrameWait), "timeout")
	case sweepTimeout:
		c.s.metrics.rejected.WithLabelValues("timeout").Inc()
		c.mu.Lock()
		c.endLocked("timeout", nil)
		c.mu.Unlock()
	case sweepPing:
		c.lastPing = now
		c.do(func() { c.send(wsframe.Ping, nil) })
	}
}
