// Package ingest is an ingest node: it takes trackers' WebSocket traffic,
// validates it, and publishes it to the ACTIVITY stream in NATS JetStream.
// It also serves the embedded static files and the demo page. It keeps no
// state that outlives a connection, so any node can take any page.
package ingest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulse-analytics/pulse/clientaddr"
	"github.com/pulse-analytics/pulse/event"
	"github.com/pulse-analytics/pulse/ingest/netpoll"
	"github.com/pulse-analytics/pulse/static"
	"github.com/pulse-analytics/pulse/store"
)

// Publisher stores messages in JetStream.
type Publisher interface {
	// PublishMsg returns once the stream has stored msg (or found it a
	// duplicate by its Nats-Msg-Id). It is safe for concurrent use. On
	// error the message may or may not be stored; publishing it again with
	// the same Nats-Msg-Id is safe.
	PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

// SiteLookup finds sites in the site registry.
type SiteLookup interface {
	// Site returns the site with key, or false if there is none. It is
	// safe for concurrent use and answers from memory: it is called on
	// every connection.
	Site(key string) (store.Site, bool)
}

// Config configures a Server. Zero fields take the stated defaults.
type Config struct {
	// Publisher stores accepted events. Required.
	Publisher Publisher
	// NodeID names this node in batches and message ids. Default: random.
	NodeID string
	// Sites is the site registry. Required.
	Sites SiteLookup
	// Quotes answers quote polls; nil disables the quote API.
	Quotes QuoteService
	// DefaultSite is the site of clients that name none. Default:
	// event.DefaultSite.
	DefaultSite string
	// Ready reports whether the node's NATS connection is usable; /readyz
	// uses it. Default: always ready.
	Ready func() error
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer receives the node's metrics. Default: a private registry.
	Registerer prometheus.Registerer

	// ReadLimit is the largest frame accepted, in bytes. Default 64 KiB:
	// a full batch of 200 events with long paths is about 40 KiB.
	ReadLimit int64
	// MaxBatchEvents is the most events one tracker batch may hold.
	// Default 200.
	MaxBatchEvents int
	// SampleInterval is the mouse-move sampling interval told to trackers.
	// Default 50 ms: smooth enough for a heatmap, 20 moves a second at most.
	SampleInterval time.Duration
	// FlushInterval is the batch interval told to trackers. Default 1 s:
	// the dashboard ticks once a second, so sooner buys nothing.
	FlushInterval time.Duration
	// BatchInterval is how long events wait to be stored together, one
	// message per site (see batcher). Default 50 ms: far below the
	// dashboard's tick, long enough to put many frames and tracker
	// batches in one message. A busy io_uring poller reads in rounds on
	// the same grid, just before the batcher stores what they brought.
	BatchInterval time.Duration
	// AckInterval is the least time between two acks on a connection.
	// Acks are cumulative (an ack of seq acks every batch up to it): the
	// first batch stored after a quiet AckInterval is acked at once, the
	// ones stored within it by one ack at its end, which the batcher sends
	// with other connections' after its next flush. Default 10 s: a
	// tracker flushing every second keeps ten batches for re-sending, and
	// so does one at the connection's limit (MaxConnEventsPerSecond in
	// batches of MaxBatchEvents fills one a second), well inside the 50
	// that pulse.js keeps. The node sends a tenth of the acks, each a TCP
	// segment (3 s cost 6 % more CPU in the batched benchmark).
	AckInterval time.Duration
	// MaxBuffered bounds events waiting to be stored; beyond it classic
	// events are dropped and counted, and a tracker batch is refused
	// (its tracker re-sends it later). Default 100,000 (≈ 10 MB).
	MaxBuffered int
	// PingInterval is how often the server pings a tracker. Default 20 s,
	// under the 30 s idle timeouts of common proxies.
	PingInterval time.Duration
	// PongWait is how long a tracker may stay silent (no frame, no pong)
	// before it is dropped. Default 45 s: two pings and some slack.
	PongWait time.Duration
	// FrameWait bounds how long a frame may take to arrive, from its
	// first byte to its last (for a fragmented message, the whole
	// message). Bytes that trickle in keep a connection from timing out
	// as idle, so without it a client could hold a frame's buffer for
	// ever. Default 20 s: a full 64 KiB frame at 4 KB a second.
	FrameWait time.Duration
	// MaxPendingBytes bounds what the node holds of frames not yet
	// complete, all connections together; a frame that would go beyond
	// it closes its connection with 1013 (try again later). Default
	// 256 MiB.
	MaxPendingBytes int64
	// PublishTimeout bounds one publish to JetStream. Default 5 s.
	PublishTimeout time.Duration
	// MaxConnEventsPerSecond is the sustained event rate one connection
	// may send, with a burst of ten times that. Default 200: a tracker
	// sampling moves every 50 ms sends about 25 a second.
	MaxConnEventsPerSecond int
	// MaxConnsPerIP bounds connections from one client address (an IPv6
	// client's /64). Default 1,000.
	MaxConnsPerIP int
	// MaxConnectsPerIPPerSecond bounds how fast one client address may
	// open connections, with a burst of ten times that: every connection
	// costs a handshake, and one address reconnecting in a loop would
	// otherwise keep the node busy with them. Default 50.
	MaxConnectsPerIPPerSecond int
	// MaxQuoteStreams bounds the quote streams (/v1/quotes/stream) the
	// node serves at once, and MaxQuoteStreamsPerIP those of one client
	// address. Defaults 10,000 and 20: a page needs one.
	MaxQuoteStreams      int
	MaxQuoteStreamsPerIP int
	// ClientAddrs finds a request's client address, for the limits kept
	// per address; behind a proxy, one that trusts its X-Forwarded-For.
	// Default: the connection's peer.
	ClientAddrs *clientaddr.Resolver
	// Capacity is the events per second this node takes before it asks
	// trackers to slow down (see loadLevel). Default 50,000.
	Capacity int
	// LoadInterval is how often the load is measured. Default 1 s.
	LoadInterval time.Duration
	// Poller is how connections are read: io_uring, epoll or goroutines.
	// Default: the best this system allows.
	Poller netpoll.Mode
}

func (c *Config) setDefaults() {
	if c.NodeID == "" {
		c.NodeID = newID()[:8]
	}
	if c.DefaultSite == "" {
		c.DefaultSite = event.DefaultSite
	}
	if c.Ready == nil {
		c.Ready = func() error { return nil }
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	if c.ReadLimit == 0 {
		c.ReadLimit = 64 << 10
	}
	if c.MaxBatchEvents == 0 {
		c.MaxBatchEvents = 200
	}
	if c.SampleInterval == 0 {
		c.SampleInterval = 50 * time.Millisecond
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = time.Second
	}
	if c.BatchInterval == 0 {
		c.BatchInterval = 50 * time.Millisecond
	}
	if c.AckInterval == 0 {
		c.AckInterval = 10 * time.Second
	}
	if c.MaxBuffered == 0 {
		c.MaxBuffered = 100_000
	}
	if c.PingInterval == 0 {
		c.PingInterval = 20 * time.Second
	}
	if c.PongWait == 0 {
		c.PongWait = 45 * time.Second
	}
	if c.FrameWait == 0 {
		c.FrameWait = 20 * time.Second
	}
	if c.MaxPendingBytes == 0 {
		c.MaxPendingBytes = 256 << 20
	}
	if c.PublishTimeout == 0 {
		c.PublishTimeout = 5 * time.Second
	}
	if c.MaxConnEventsPerSecond == 0 {
		c.MaxConnEventsPerSecond = 200
	}
	if c.MaxConnsPerIP == 0 {
		c.MaxConnsPerIP = 1000
	}
	if c.MaxConnectsPerIPPerSecond == 0 {
		c.MaxConnectsPerIPPerSecond = 50
	}
	if c.MaxQuoteStreams == 0 {
		c.MaxQuoteStreams = 10_000
	}
	if c.MaxQuoteStreamsPerIP == 0 {
		c.MaxQuoteStreamsPerIP = 20
	}
	if c.ClientAddrs == nil {
		c.ClientAddrs = &clientaddr.Resolver{}
	}
	if c.Capacity == 0 {
		c.Capacity = 50_000
	}
	if c.LoadInterval == 0 {
		c.LoadInterval = time.Second
	}
}

// Server is an ingest node. Create it with New, serve Handler, and stop it
// with Shutdown.
type Server struct {
	cfg      Config
	log      *slog.Logger
	metrics  *metrics
	upgrader websocket.Upgrader
	batcher  *batcher
	// limits are every connection's protocol limits, and connectRate
	// the rate of connects a client address may make: from cfg, shared
	// so that no connection or address holds its own copy.
	limits      protocolLimits
	connectRate rate

	// pending is the bytes of unfinished frames all connections' readers
	// hold (see Config.MaxPendingBytes).
	pending atomic.Int64
	// accepted counts events accepted since the last load measurement;
	// perSecond holds the last measurement (float64 bits).
	accepted  atomic.Int64
	perSecond atomic.Uint64
	// callIns is the distribution of the callIns given to quote widgets.
	callIns callIns
	// level is the current load level (see loadLevel).
	level    atomic.Int32
	stopLoad chan struct{}
	loadDone chan struct{}
	// poller reads every connection; sweepDone closes when the sweeper,
	// which pings idle connections, has stopped.
	poller    *netpoll.Poller
	sweepDone chan struct{}
	workers   workers
	// batchFrames holds *batchFrame scratch for decoding batches on
	// the poller's loops, so that a batch's events are not a new slice
	// grown anew for every frame.
	batchFrames sync.Pool

	mu    sync.Mutex
	conns map[*conn]struct{}
	perIP addrCounts
	// streams counts open quote streams, streamsPerIP by client.
	streams      int
	streamsPerIP addrCounts
	// connects holds the connect budget of each recent client address.
	connects map[string]*budget
	closing  bool
	handlers sync.WaitGroup
	shutdown atomic.Bool
	// publishing is the lifetime of presence publishes and their
	// retries; Shutdown ends it when it gives up waiting for them.
	publishing     context.Context
	stopPublishing context.CancelFunc
}

// New returns a Server and starts its batcher, which Shutdown stops.
func New(cfg Config) (*Server, error) {
	if cfg.Publisher == nil || cfg.Sites == nil {
		return nil, errors.New("ingest: a publisher and a site registry are required")
	}
	cfg.setDefaults()
	if !event.ValidSite(cfg.DefaultSite) {
		return nil, fmt.Errorf("ingest: invalid default site %q", cfg.DefaultSite)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:          cfg,
		log:          cfg.Logger.With("component", "ingest", "node", cfg.NodeID),
		metrics:      m,
		conns:        make(map[*conn]struct{}),
		perIP:        make(addrCounts),
		streamsPerIP: make(addrCounts),
		connects:     make(map[string]*budget),
		stopLoad:     make(chan struct{}),
		loadDone:     make(chan struct{}),
		sweepDone:    make(chan struct{}),
		limits: protocolLimits{
			EventsPerSecond: cfg.MaxConnEventsPerSecond, AckInterval: cfg.AckInterval, MaxQueued: maxQueued,
		},
		connectRate: newRate(cfg.MaxConnectsPerIPPerSecond, 10*cfg.MaxConnectsPerIPPerSecond),
	}
	s.publishing, s.stopPublishing = context.WithCancel(context.Background())
	s.batchFrames.New = func() any { return new(batchFrame) }
	s.upgrader = websocket.Upgrader{
		// gorilla only does the handshake here; its Conn is dropped
		// once upgraded. Small, pooled buffers keep that cheap.
		ReadBufferSize:  1,
		WriteBufferSize: 1024,
		WriteBufferPool: &sync.Pool{},
		Subprotocols:    []string{"json"},
		Error:           s.upgradeError,
	}
	if s.poller, err = netpoll.New(netpoll.Options{Mode: cfg.Poller, Round: cfg.BatchInterval}); err != nil {
		return nil, err
	}
	s.log.Info("ingest reads connections", "with", s.poller.Mode())
	s.batcher = newBatcher(batcherConfig{
		interval: cfg.BatchInterval, maxBuffered: cfg.MaxBuffered, nodeID: cfg.NodeID,
		publish: s.publish, metrics: m, log: s.log,
	})
	go s.watchLoad()
	go s.sweep()
	return s, nil
}

// Handler serves the tracker endpoint, static files and the demo page.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/track", s.serveTrack)
	mux.HandleFunc("GET /v1/quote", s.serveQuote)
	mux.HandleFunc("GET /v1/quotes/stream", s.serveQuoteStream)
	mux.Handle("GET /static/", http.StripPrefix("/static/", static.Handler()))
	mux.HandleFunc("GET /demo", s.serveDemo)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		// Older clients connect on "/" with subprotocol "json".
		if websocket.IsWebSocketUpgrade(r) {
			s.serveTrack(w, r)
			return
		}
		http.Redirect(w, r, "/demo", http.StatusFound)
	})
	return mux
}

func (s *Server) serveDemo(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	http.ServeFileFS(w, r, static.FS, "demo.html")
}

// NodeID names the node.
func (s *Server) NodeID() string { return s.cfg.NodeID }

// Ready reports whether the node can take traffic: it is not shutting
// down, its NATS connection is usable, and a new tracker would get a
// worker for its join within workerWait.
func (s *Server) Ready() error {
	if s.shutdown.Load() {
		return errors.New("ingest: shutting down")
	}
	if waiting, stalled := s.workers.stalled(time.Now(), workerWait); stalled {
		return fmt.Errorf("ingest: all %d workers busy for over %s, %d connections waiting", maxWorkers, workerWait, waiting)
	}
	return s.cfg.Ready()
}

// workerWait is how long connections may wait for a worker, with every
// worker busy, before the node says it is not ready.
const workerWait = time.Second

// originAllowed lets through requests without an Origin header (not a
// browser), pages of the node itself (the demo page), and origins the site
// allows.
func (s *Server) originAllowed(r *http.Request, site *store.Site) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if u, err := url.Parse(origin); err == nil && strings.EqualFold(u.Host, r.Host) {
		return true
	}
	return site.AllowsOrigin(origin)
}

func (s *Server) upgradeError(w http.ResponseWriter, _ *http.Request, status int, reason error) {
	http.Error(w, "websocket upgrade refused: "+reason.Error(), status)
}

func (s *Server) serveTrack(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	site := q.Get("site")
	if site == "" {
		site = s.cfg.DefaultSite
	}
	st, ok := s.cfg.Sites.Site(site)
	if !ok {
		s.metrics.rejected.WithLabelValues("unknown_site").Inc()
		http.Error(w, fmt.Sprintf("unknown site %q", site), http.StatusNotFound)
		return
	}
	if !s.originAllowed(r, &st) {
		s.metrics.rejected.WithLabelValues("origin").Inc()
		http.Error(w, fmt.Sprintf("origin %q is not allowed for site %q", r.Header.Get("Origin"), site), http.StatusForbidden)
		return
	}
	protocol := q.Get("v") == "1"
	session := q.Get("sid")
	if session != "" && !validID(session) {
		s.metrics.rejected.WithLabelValues("bad_session").Inc()
		http.Error(w, "invalid sid: want the session id of a hello", http.StatusBadRequest)
		return
	}
	visitor := q.Get("vid")
	if visitor != "" && !validID(visitor) {
		s.metrics.rejected.WithLabelValues("bad_visitor").Inc()
		http.Error(w, "invalid vid: want 22 characters of URL-safe base64", http.StatusBadRequest)
		return
	}
	ip := s.cfg.ClientAddrs.Key(r)
	switch s.track(ip) {
	case trackShuttingDown:
		http.Error(w, "ingest node shutting down", http.StatusServiceUnavailable)
		return
	case trackTooMany:
		s.metrics.rejected.WithLabelValues("conns_per_ip").Inc()
		http.Error(w, fmt.Sprintf("too many connections from %s (limit %d)", ip, s.cfg.MaxConnsPerIP), http.StatusTooManyRequests)
		return
	case trackTooFast:
		s.metrics.rejected.WithLabelValues("connects_per_ip").Inc()
		w.Header().Set("Retry-After", "1")
		http.Error(w, fmt.Sprintf("too many new connections from %s (limit %d a second)", ip, s.cfg.MaxConnectsPerIPPerSecond), http.StatusTooManyRequests)
		return
	}
	up := s.upgrader
	up.CheckOrigin = func(r *http.Request) bool { return s.originAllowed(r, &st) }
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		s.untrack(ip)
		return // the upgrader has answered
	}
	// The connection outlives the request: its strings must not keep
	// the request line they were parsed from alive (about 100 bytes a
	// connection). The site's is the registry's, shared by every
	// connection of the site.
	if st.Key == site {
		site = st.Key
	}
	session, visitor = strings.Clone(session), strings.Clone(visitor)
	if session == "" {
		session = newID()
	}
	if visitor == "" {
		visitor = session
	}
	nc := ws.NetConn()
	if tc, ok := nc.(interface{ SetWriteBuffer(int) error }); ok {
		_ = tc.SetWriteBuffer(sendBuffer)
	}
	// From here the connection lives on without this goroutine: the
	// poller reads it, and its end forgets it (unregister).
	c := newConn(s, nc, ip, site, session, visitor, protocol)
	if !s.register(c) {
		c.closeWith(websocket.CloseServiceRestart, "ingest node shutting down", "shutdown")
		return
	}
	if err := c.start(); err != nil {
		s.log.Warn("tracker connection not started", "err", err)
		c.closeWith(websocket.CloseInternalServerErr, "could not start", "error")
	}
}

// addrCounts counts what each client address has open; an address with
// nothing open is not in the map, so it holds only addresses in use.
type addrCounts map[string]int

func (m addrCounts) add(addr string) { m[addr]++ }

func (m addrCounts) done(addr string) {
	if m[addr]--; m[addr] <= 0 {
		delete(m, addr)
	}
}

// sendBuffer is a tracker socket's send buffer (the kernel doubles it).
// What a node sends a tracker is small (hello, acks, rates, pongs), so
// this is ample even over a slow link; without it the kernel lets the
// buffer grow to megabytes for a client that does not read, and a write
// to it blocks only once those are full.
const sendBuffer = 16 << 10

type trackResult int

const (
	trackOK trackResult = iota
	trackShuttingDown
	trackTooMany
	trackNodeFull
	trackTooFast
)

// track counts a handler in, unless the server is shutting down or ip has
// too many connections; untrack counts it out.
func (s *Server) track(ip string) trackResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return trackShuttingDown
	}
	if s.perIP[ip] >= s.cfg.MaxConnsPerIP {
		return trackTooMany
	}
	now := time.Now().UnixNano()
	b := s.connects[ip]
	if b == nil {
		nb := newBudget(s.connectRate)
		b = &nb
		s.connects[ip] = b
	}
	if !b.allow(s.connectRate, now, 1) {
		return trackTooFast
	}
	s.perIP.add(ip)
	s.handlers.Add(1)
	return trackOK
}

// forgetConnects drops the connect budgets of addresses full again (idle
// for at least ten seconds), so the map holds only recent addresses.
func (s *Server) forgetConnects(now int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ip, b := range s.connects {
		if now-b.last > int64(10*time.Second) {
			delete(s.connects, ip)
		}
	}
}

func (s *Server) untrack(ip string) {
	s.mu.Lock()
	s.perIP.done(ip)
	s.mu.Unlock()
	s.handlers.Done()
}

// register adds an upgraded connection; unregister, at its end, removes
// it and ends what track started.
func (s *Server) register(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns[c] = struct{}{}
	s.metrics.connections.Inc()
	return !s.closing
}

func (s *Server) unregister(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.metrics.connections.Dec()
	s.mu.Unlock()
	s.untrack(c.ip)
}

// sweep calls every connection's sweep, often enough to ping and time out
// on time, until Shutdown.
func (s *Server) sweep() {
	defer close(s.sweepDone)
	t := time.NewTicker(min(s.cfg.PingInterval, s.cfg.PongWait, s.cfg.FrameWait) / 4)
	defer t.Stop()
	var conns []*conn
	for {
		select {
		case <-s.stopLoad:
			return
		case now := <-t.C:
			s.mu.Lock()
			conns = conns[:0]
			for c := range s.conns {
				conns = append(conns, c)
			}
			s.mu.Unlock()
			for _, c := range conns {
				c.sweep(now.UnixNano())
			}
			clear(conns)
			s.forgetConnects(now.UnixNano())
		}
	}
}

// Shutdown tells every tracker to go elsewhere (close 1012), waits until
// their last frames are handled, then stores what waits in the batcher. http.Server.Shutdown does not close hijacked WebSockets, so
// call both.
func (s *Server) Shutdown(ctx context.Context) error {
	if !s.shutdown.Swap(true) {
		close(s.stopLoad)
	}
	<-s.loadDone
	<-s.sweepDone
	s.mu.Lock()
	s.closing = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.closeWith(websocket.CloseServiceRestart, "ingest node restarting, reconnect", "shutdown")
	}
	done := make(chan struct{})
	go func() {
		s.handlers.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("ingest shutdown: connections still open: %w", ctx.Err())
		// Leaves still retrying (NATS is gone) give up now, so that no
		// connection's work outlives Shutdown; a write to a stuck
		// client ends within writeWait.
		s.stopPublishing()
		select {
		case <-done:
		case <-time.After(writeWait + time.Second):
		}
	}
	s.poller.Close()
	err = errors.Join(err, s.batcher.stop(ctx))
	s.stopPublishing()
	return err
}

// publish stores one message with a message id, so a retry after an
// unclear failure is deduplicated by the stream. It gives up when
// Shutdown does.
func (s *Server) publish(subject, msgID string, data []byte) error {
	ctx, cancel := context.WithTimeout(s.publishing, s.cfg.PublishTimeout)
	defer cancel()
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, msgID)
	if _, err := s.cfg.Publisher.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("publish %s: %w", subject, err)
	}
	return nil
}

// rates are the rates trackers must keep now: the configured ones, slowed
// by the load level.
func (s *Server) rates() rates {
	return ratesAt(s.cfg, int(s.level.Load()))
}

// newID returns 22 characters of URL-safe base64 from 128 random bits.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// validID reports whether id looks like one newID made.
func validID(id string) bool {
	if len(id) != 22 {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(id)
	return err == nil
}
