package ingest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"

	"github.com/pulse-analytics/pulse/event"
)

// writeWait bounds one write to a tracker, so a client that stopped reading
// cannot hold its reader goroutine.
const writeWait = 5 * time.Second

// conn is one tracker connection. Its reader runs in the HTTP handler's
// goroutine; data frames (hello, acks, rate directives) are written under
// wmu, pings through WriteControl, which gorilla allows concurrently.
type conn struct {
	s        *Server
	ws       *websocket.Conn
	id       string // unique per connection, names presence messages
	site     string
	session  string
	protocol bool // false: classic single-event frames only

	visitor   string // set on join
	joined    bool
	lastAck   uint64
	limiter   *rate.Limiter
	wmu       sync.Mutex
	closeOnce sync.Once
}

// newConn makes a connection; visitor is the tracker's visitor id, unused
// for classic clients, which name theirs in every frame.
func newConn(s *Server, ws *websocket.Conn, site, session, visitor string, protocol bool) *conn {
	perSecond := s.cfg.MaxConnEventsPerSecond
	return &conn{
		s: s, ws: ws, id: newID(), site: site, session: session, visitor: visitor, protocol: protocol,
		limiter: rate.NewLimiter(rate.Limit(perSecond), 10*perSecond),
	}
}

// serve runs the connection until it ends, then publishes the leave.
func (c *conn) serve() {
	defer c.closeOnce.Do(func() { _ = c.ws.Close() })
	c.ws.SetReadLimit(c.s.cfg.ReadLimit)
	_ = c.ws.SetReadDeadline(time.Now().Add(c.s.cfg.PongWait))
	c.ws.SetPongHandler(func(string) error {
		return c.ws.SetReadDeadline(time.Now().Add(c.s.cfg.PongWait))
	})
	stopPing := make(chan struct{})
	defer close(stopPing)
	go c.ping(stopPing)

	if c.protocol {
		if err := c.writeJSON(helloMsg{Type: "hello", Session: c.session, rates: c.s.rates()}); err != nil {
			c.closeWith(websocket.CloseInternalServerErr, "hello failed")
			return
		}
		c.join(c.visitor)
	}
	reason := c.readLoop()
	if c.joined {
		c.leave(reason)
	}
}

func (c *conn) ping(stop <-chan struct{}) {
	t := time.NewTicker(c.s.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeWait)); err != nil {
				return
			}
		}
	}
}

// readLoop reads frames until the connection ends and returns why it did,
// in words for the leave event.
func (c *conn) readLoop() string {
	for {
		mt, data, err := c.ws.ReadMessage()
		if err != nil {
			return c.endReason(err)
		}
		if mt != websocket.TextMessage {
			c.s.metrics.rejected.WithLabelValues("binary").Inc()
			c.closeWith(websocket.CloseUnsupportedData, "text frames only")
			return "error"
		}
		if err := c.handle(data); err != nil {
			switch {
			case errors.Is(err, errFrame):
				c.s.metrics.rejected.WithLabelValues("invalid_frame").Inc()
				c.closeWith(websocket.CloseInvalidFramePayloadData, err.Error())
			case errors.Is(err, errRateLimit):
				c.s.metrics.rejected.WithLabelValues("rate_limit").Inc()
				c.closeWith(websocket.ClosePolicyViolation, err.Error())
			default:
				c.s.log.Warn("tracker frame failed", "site", c.site, "err", err)
				c.closeWith(websocket.CloseTryAgainLater, "could not store events, reconnect and re-send")
			}
			return "error"
		}
	}
}

func (c *conn) endReason(err error) string {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		c.s.metrics.rejected.WithLabelValues("timeout").Inc()
		return "timeout"
	case errors.Is(err, websocket.ErrReadLimit):
		c.s.metrics.rejected.WithLabelValues("too_large").Inc()
		// gorilla has already sent 1009 (message too big).
		return "error"
	case c.s.shutdown.Load():
		return "shutdown"
	case websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway, websocket.CloseNoStatusReceived):
		return "closed"
	default:
		return "error"
	}
}

func (c *conn) handle(data []byte) error {
	var ft frameType
	if err := json.Unmarshal(data, &ft); err != nil {
		return frameErr("not a JSON object: %v", err)
	}
	switch {
	case ft.Type == "":
		return c.handleClassic(data)
	case ft.Type == "batch" && c.protocol:
		return c.handleBatch(data)
	default:
		return frameErr("unexpected frame type %q", ft.Type)
	}
}

func (c *conn) handleClassic(data []byte) error {
	visitor, x, y, err := decodeClassic(data)
	if err != nil {
		return err
	}
	if !c.joined {
		c.join(visitor)
	}
	if !c.limiter.Allow() {
		// Classic clients cannot be told to slow down or re-send, so
		// frames over the limit are dropped and counted.
		c.s.metrics.rejected.WithLabelValues("rate_limit").Inc()
		return nil
	}
	c.s.accepted.Add(1)
	ev := event.Event{Kind: event.KindMove, T: time.Now().UnixMilli(), X: x, Y: y, Visitor: visitor}
	if !c.s.classic.add(c.site, ev) {
		c.s.metrics.dropped.WithLabelValues(c.site, "buffer_full").Inc()
	}
	return nil
}

// handleBatch stores a tracker batch and acks it only after JetStream has,
// so an acked batch is never lost. A re-sent batch carries the same message
// id (site, session, seq), so the stream drops it if it already has it.
func (c *conn) handleBatch(data []byte) error {
	now := time.Now().UnixMilli()
	seq, events, err := decodeBatch(data, now, c.s.cfg.MaxBatchEvents)
	if err != nil {
		return err
	}
	if seq <= c.lastAck {
		// Already stored on this connection: the tracker missed the ack.
		return c.writeJSON(ackMsg{Type: "ack", Seq: seq})
	}
	if !c.limiter.AllowN(time.Now(), len(events)) {
		// The batch is not acked: the tracker keeps it and re-sends it
		// after reconnecting, so closing loses nothing.
		return fmt.Errorf("%w: more than %d events a second", errRateLimit, c.s.cfg.MaxConnEventsPerSecond)
	}
	c.s.accepted.Add(int64(len(events)))
	b := event.Batch{
		Site: c.site, Session: c.session, Visitor: c.visitor, Seq: seq,
		Node: c.s.cfg.NodeID, Received: now, Events: events,
	}
	payload := b.AppendBinary(nil)
	msgID := c.site + ":" + c.session + ":" + strconv.FormatUint(seq, 10)
	if err := c.s.publish(event.ActivitySubject(c.site), msgID, payload); err != nil {
		return err
	}
	c.s.metrics.countEvents(c.site, events)
	c.lastAck = seq
	return c.writeJSON(ackMsg{Type: "ack", Seq: seq})
}

func (c *conn) join(visitor string) {
	c.visitor = visitor
	c.joined = true
	c.presence(event.Join, "")
}

func (c *conn) leave(reason string) { c.presence(event.Leave, reason) }

func (c *conn) presence(kind event.PresenceKind, reason string) {
	p := event.Presence{
		Kind: kind, Site: c.site, Conn: c.id, Session: c.session, Visitor: c.visitor,
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
		if try == presenceTries {
			c.s.metrics.dropped.WithLabelValues(c.site, "presence").Inc()
			c.s.log.Warn("presence not published", "site", c.site, "kind", kind, "err", err)
			return
		}
		time.Sleep(wait)
		wait = min(2*wait, 4*time.Second)
	}
}

// presenceTries bounds the attempts to publish a join or leave.
const presenceTries = 10

// errRateLimit marks a connection over its event rate; it is closed with
// 1008 (policy violation).
var errRateLimit = errors.New("event rate limit exceeded")

func (c *conn) writeJSON(v any) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(writeWait))
	return c.ws.WriteJSON(v)
}

// closeWith sends a close frame with code and reason and closes the socket;
// the reader then ends. Safe to call from any goroutine, more than once.
func (c *conn) closeWith(code int, reason string) {
	c.closeOnce.Do(func() {
		// A close reason must fit a control frame (125 bytes with the code).
		reason = truncate(reason, 123)
		_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
		_ = c.ws.Close()
	})
}
