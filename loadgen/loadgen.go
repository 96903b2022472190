// Package loadgen drives tracker load at an ingest node for benchmarks:
// many WebSocket trackers, ramped up, spread over several loopback source
// addresses, each sending at a set rate in the classic or the batched
// format for a bounded time. It only ever targets loopback addresses and
// always stops by itself.
package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// Config configures a run. Zero fields take the stated defaults.
type Config struct {
	// URL is the ingest node, like http://127.0.0.1:8081. Required; its
	// host must be a loopback address.
	URL string
	// Site is the site the trackers send for. Default "demo".
	Site string
	// Sites spreads the trackers over that many sites, round robin: Site
	// itself when 1 (the default), else Site-0 to Site-(N-1), which the
	// node must know (pulse -sites-file; bench/sites.sh writes one). With
	// a dashboard, the consumers stream the first of them, and the count
	// is the sum of pulse_aggregator_events_total over them at
	// MetricsURL.
	Sites int
	// MetricsURL is the metrics listener of the node that aggregates
	// (loopback only). Default http://127.0.0.1:2113; used when Sites > 1.
	MetricsURL string
	// Trackers is how many trackers run. Default 100.
	Trackers int
	// Rate is the events per second each tracker sends. Default 10.
	Rate float64
	// Duration bounds the run after the ramp. Default 10 s, at most 10 min.
	Duration time.Duration
	// Ramp spreads the trackers' starts. Default 1 s.
	Ramp time.Duration
	// Batched sends the tracker protocol (batches, acks) instead of
	// classic single-event frames.
	Batched bool
	// BatchEvery is how often a batched tracker sends. Default 1 s.
	BatchEvery time.Duration
	// Target is the kind of server loaded with batches, for comparing
	// Pulse with its peers on the same frames: TargetPulse (the
	// default), TargetFloor or TargetCentrifugo. Peers get Batched's
	// frames.
	Target string
	// Sources is how many loopback source addresses (127.0.0.1, .2, …)
	// the trackers are spread over, so that tens of thousands of
	// connections fit in the ephemeral port range. Default 1.
	Sources int

	// Dashboard, when set, is the dashboard (like http://127.0.0.1:2112,
	// loopback only): the run logs in as User with Password, reads the
	// site's total from the stats API before and after, and runs
	// Consumers SSE streams of the site that measure delivery latency.
	Dashboard string
	User      string // default "admin"
	Password  string
	Consumers int // default 1 with a dashboard
	// Settle bounds the wait, after sending, for the dashboard to count
	// every event sent. Default 10 s, at most 1 min.
	Settle time.Duration
	// ServerPID, when set, is the server process whose CPU time and
	// memory the report states (Linux /proc).
	ServerPID int
}

// The servers a run can load (Config.Target).
const (
	// TargetPulse is a Pulse ingest node: hello, batches, acks.
	TargetPulse = "pulse"
	// TargetFloor is bench/floor, the bare receive floor: the batches
	// alone, no hello and no acks, counted as frames
	// (floor_frames_total at MetricsURL).
	TargetFloor = "floor"
	// TargetCentrifugo is Centrifugo: its JSON client protocol on
	// /connection/websocket, each batch the data of a publish command
	// to the channel track:<site> (which needs client.insecure, or
	// publishing allowed to clients), the publish replies counted as
	// acks.
	TargetCentrifugo = "centrifugo"
)

// maxDuration bounds any run, whatever it is asked.
const maxDuration = 10 * time.Minute

// Report is what a run measured.
type Report struct {
	Trackers  int     `json:"trackers"`
	Connected int64   `json:"connected"`
	Format    string  `json:"format"`
	Seconds   float64 `json:"seconds"`
	// Sent counts events written; Acked those the server acked (batched
	// format only).
	Sent  int64 `json:"sent"`
	Acked int64 `json:"acked"`
	// Errors counts failed dials and broken connections.
	Errors         int64   `json:"errors"`
	SentPerSecond  float64 `json:"sentPerSecond"`
	AckedPerSecond float64 `json:"ackedPerSecond"`

	// With a dashboard: Counted is how much the site's total grew, and
	// CountedRatio that over Sent; Latency is the delivery latency to the
	// SSE consumers (see sendLog); Updates counts the SSE updates they
	// got in all.
	Consumers    int     `json:"consumers,omitempty"`
	Counted      uint64  `json:"counted,omitempty"`
	CountedRatio float64 `json:"countedRatio,omitempty"`
	Latency      Latency `json:"latency,omitzero"`
	Updates      int64   `json:"updates,omitempty"`
	// With a dashboard and one site: Joined and Left are how much the
	// site's arrivals and departures grew, read after every tracker
	// closed (waiting up to Settle for the departures to be counted).
	Joined uint64 `json:"joined,omitempty"`
	Left   uint64 `json:"left,omitempty"`
	// Hello is the time from each batched tracker's dial to the Pulse
	// node's hello: TCP, the WebSocket handshake and the hello.
	Hello Latency `json:"hello,omitzero"`
	// With a server PID: its CPU time from the start of the run until
	// everything was counted (or Settle ran out), in seconds and per
	// event counted (or sent, without a dashboard), and its resident
	// memory at the end.
	ServerCPUSeconds float64 `json:"serverCpuSeconds,omitempty"`
	// ServerCPUSystemSeconds is the part of ServerCPUSeconds spent in
	// the kernel: on loopback its sends include the receiver's TCP work.
	ServerCPUSystemSeconds float64 `json:"serverCpuSystemSeconds,omitempty"`
	ServerCPUCores         float64 `json:"serverCpuCores,omitempty"`
	ServerCPUPerEvent      float64 `json:"serverCpuPerEventUs,omitempty"`
	ServerRSSMegabytes     float64 `json:"serverRssMB,omitempty"`
	// ServerRSSPerConnKB is how much the server's resident memory grew
	// from the start of the run to the end, per connection open then:
	// what a connection costs the server, in KB.
	ServerRSSPerConnKB float64 `json:"serverRssPerConnKB,omitempty"`
	// ServerCPUPerEventSent is the server's CPU per event sent after the
	// ramp (and a second more), from then until everything was counted:
	// the connections' setup (handshakes, joins) left out, as the peers'
	// loadgen leaves it out by measuring its send window and drain.
	ServerCPUPerEventSent float64 `json:"serverCpuPerEventSentUs,omitempty"`
	// OpenWhenMeasured counts the trackers' connections still open when
	// the server's CPU was read at the end: the trackers close them only
	// after that, as the peers' loadgen does, so neither figure includes
	// their closing.
	OpenWhenMeasured int64 `json:"openWhenMeasured,omitempty"`
}

// JSON returns the report as indented JSON.
func (r Report) JSON() string {
	b, _ := json.MarshalIndent(r, "", "  ")
	return string(b)
}

// Run runs the load until cfg.Duration has passed after the ramp or ctx
// ends, and reports.
func Run(ctx context.Context, cfg Config) (Report, error) {
	if err := cfg.defaults(); err != nil {
		return Report{}, err
	}
	u, _ := url.Parse(cfg.URL)
	sites := cfg.siteNames()
	format := "classic"
	if cfg.Batched {
		format = "batched"
	}
	if cfg.Target != TargetPulse {
		format += " to " + cfg.Target
	}
	// watched counts the events sent for the first site, whose stream
	// the consumers read.
	var r struct{ connected, sent, watched, acked, errors atomic.Int64 }
	var dash *dashboard
	// base is the first site's total at the start, counted what every
	// site of the run counted.
	var base, countedBefore uint64
	// presenceBefore is the first site's figures at the start.
	var presenceBefore siteStats
	var hellos histogram
	var counted func(context.Context) (uint64, error)
	switch cfg.Target {
	case TargetFloor:
		mu, _ := url.Parse(cfg.MetricsURL)
		perFrame := uint64(cfg.perBatch())
		counted = func(ctx context.Context) (uint64, error) {
			series, err := scrape(ctx, mu, "floor_frames_total")
			return uint64(series[""]) * perFrame, err
		}
		var err error
		if countedBefore, err = counted(ctx); err != nil {
			return Report{}, err
		}
	case TargetCentrifugo:
		counted = func(context.Context) (uint64, error) { return uint64(r.acked.Load()), nil }
	}
	if cfg.Dashboard != "" {
		du, _ := url.Parse(cfg.Dashboard)
		var err error
		if dash, err = login(ctx, du, cfg.User, cfg.Password, sites[0]); err != nil {
			return Report{}, err
		}
		if presenceBefore, err = dash.stats(ctx); err != nil {
			return Report{}, err
		}
		base = presenceBefore.Events
		counted, countedBefore = dash.total, base
		if len(sites) > 1 {
			mu, _ := url.Parse(cfg.MetricsURL)
			counted = func(ctx context.Context) (uint64, error) { return aggregated(ctx, mu, sites) }
			if countedBefore, err = counted(ctx); err != nil {
				return Report{}, err
			}
		}
	}
	var before procStat
	if cfg.ServerPID != 0 {
		var err error
		if before, err = readProc(cfg.ServerPID); err != nil {
			return Report{}, err
		}
	}
	start := time.Now()

	// Consumers and the send log run until everything is counted.
	var log sendLog
	var hist histogram
	var updates atomic.Int64
	watchCtx, stopWatching := context.WithCancel(ctx)
	defer stopWatching()
	var watchers sync.WaitGroup
	watchers.Go(func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			log.record(time.Now(), r.watched.Load())
			select {
			case <-watchCtx.Done():
				return
			case <-tick.C:
			}
		}
	})
	var consumerErr atomic.Value
	if dash != nil {
		for range cfg.Consumers {
			watchers.Go(func() {
				shown := base // what this consumer has seen
				err := dash.consume(watchCtx, func(total uint64, at time.Time) {
					updates.Add(1)
					if total > shown {
						log.delivered(int64(shown-base), int64(total-base), at, hist.add)
						shown = total
					}
				})
				if err != nil {
					consumerErr.Store(err)
				}
			})
		}
	}

	// Trackers send until sendCtx ends and keep their connections open
	// until the server's CPU has been read at the end of the run.
	sendCtx, stopSending := context.WithTimeout(ctx, cfg.Ramp+cfg.Duration)
	defer stopSending()
	openCtx, closeConns := context.WithCancel(ctx)
	defer closeConns()
	// The window without the connections' setup starts a second after
	// the ramp, if sending goes on for a while after that.
	var window struct {
		mu    sync.Mutex
		taken bool
		cpu   procStat
		sent  int64
	}
	if cfg.ServerPID != 0 && cfg.Duration > time.Second {
		t := time.AfterFunc(cfg.Ramp+time.Second, func() {
			sent := r.sent.Load()
			if cpu, err := readProc(cfg.ServerPID); err == nil {
				window.mu.Lock()
				window.taken, window.cpu, window.sent = true, cpu, sent
				window.mu.Unlock()
			}
		})
		defer t.Stop()
	}
	var sending, open sync.WaitGroup
	var openConns atomic.Int64
	for i := range cfg.Trackers {
		delay := cfg.Ramp * time.Duration(i) / time.Duration(cfg.Trackers)
		sending.Add(1)
		open.Go(func() {
			sent := sync.OnceFunc(sending.Done)
			defer sent()
			select {
			case <-time.After(delay):
			case <-sendCtx.Done():
				return
			}
			d := websocket.Dialer{
				HandshakeTimeout: 10 * time.Second,
				NetDialContext: (&net.Dialer{
					LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%cfg.Sources))},
				}).DialContext,
			}
			site := sites[i%len(sites)]
			ws := "ws://" + u.Host + "/v1/track?site=" + url.QueryEscape(site)
			switch {
			case cfg.Target == TargetCentrifugo:
				ws = "ws://" + u.Host + "/connection/websocket"
			case cfg.Batched && cfg.Target == TargetPulse:
				ws += "&v=1"
			}
			dialed := time.Now()
			conn, _, err := d.DialContext(sendCtx, ws, nil)
			if err != nil {
				r.errors.Add(1)
				return
			}
			r.connected.Add(1)
			openConns.Add(1)
			defer func() {
				closeTracker(conn)
				openConns.Add(-1)
			}()
			t := tracker{conn: conn, id: i, site: site, cfg: &cfg, sent: &r.sent, acked: &r.acked, dialed: dialed, hellos: &hellos}
			if site == sites[0] {
				t.watched = &r.watched
			}
			if err := t.run(sendCtx); err != nil {
				r.errors.Add(1)
			}
			sent()
			<-openCtx.Done()
		})
	}
	sending.Wait()
	secs := time.Since(start).Seconds()
	rep := Report{
		Trackers: cfg.Trackers, Connected: r.connected.Load(), Format: format, Seconds: secs,
		Sent: r.sent.Load(), Errors: r.errors.Load(),
		SentPerSecond: float64(r.sent.Load()) / secs,
	}
	if counted != nil {
		// Wait for the count to catch up, as long as it moves.
		if dash != nil {
			rep.Consumers = cfg.Consumers
		}
		// A node's metrics hold series per site: with thousands of
		// sites a scrape costs the node more than the stats API does,
		// so they are read less often.
		poll := 100 * time.Millisecond
		if len(sites) > 1 || cfg.Target == TargetFloor {
			poll = time.Second
		}
		last, lastMove := countedBefore, time.Now()
		for {
			total, err := counted(ctx)
			if err == nil && total != last {
				last, lastMove = total, time.Now()
			}
			if last-countedBefore >= uint64(rep.Sent) || time.Since(lastMove) > cfg.Settle || ctx.Err() != nil {
				break
			}
			time.Sleep(poll)
		}
		rep.Counted = last - countedBefore
		if rep.Sent > 0 {
			rep.CountedRatio = float64(rep.Counted) / float64(rep.Sent)
		}
	}
	if cfg.ServerPID != 0 {
		after, err := readProc(cfg.ServerPID)
		if err != nil {
			return rep, err
		}
		rep.OpenWhenMeasured = openConns.Load()
		elapsed := time.Since(start).Seconds()
		rep.ServerCPUSeconds = after.cpuSeconds - before.cpuSeconds
		rep.ServerCPUSystemSeconds = after.systemSeconds - before.systemSeconds
		rep.ServerCPUCores = rep.ServerCPUSeconds / elapsed
		rep.ServerRSSMegabytes = float64(after.rssBytes) / (1 << 20)
		if rep.OpenWhenMeasured > 0 {
			rep.ServerRSSPerConnKB = float64(after.rssBytes-before.rssBytes) / 1024 / float64(rep.OpenWhenMeasured)
		}
		events := float64(rep.Counted)
		if counted == nil {
			events = float64(rep.Sent)
		}
		if events > 0 {
			rep.ServerCPUPerEvent = rep.ServerCPUSeconds / events * 1e6
		}
		window.mu.Lock()
		if sent := rep.Sent - window.sent; window.taken && sent > 0 {
			rep.ServerCPUPerEventSent = (after.cpuSeconds - window.cpu.cpuSeconds) / float64(sent) * 1e6
		}
		window.mu.Unlock()
	}
	if dash != nil {
		// One more tick for the consumers to see the final total.
		time.Sleep(1500 * time.Millisecond)
	}
	closeConns()
	open.Wait()
	// Acks count until the connections close.
	rep.Acked = r.acked.Load()
	rep.AckedPerSecond = float64(rep.Acked) / secs
	rep.Hello = hellos.summary()
	if dash != nil && len(sites) == 1 {
		rep.Joined, rep.Left = presenceCounted(ctx, dash, presenceBefore, uint64(rep.Connected), cfg.Settle)
	}
	stopWatching()
	watchers.Wait()
	rep.Latency = hist.summary()
	rep.Updates = updates.Load()
	if err, ok := consumerErr.Load().(error); ok && rep.Updates == 0 {
		return rep, err
	}
	return rep, nil
}

// presenceCounted waits up to settle for the site's departures to grow by
// want, and returns how much its arrivals and departures grew since
// before.
func presenceCounted(ctx context.Context, dash *dashboard, before siteStats, want uint64, settle time.Duration) (joined, left uint64) {
	deadline := time.Now().Add(settle)
	for {
		st, err := dash.stats(ctx)
		if err == nil {
			joined, left = st.Arrivals-before.Arrivals, st.Departures-before.Departures
		}
		if left >= want || time.Now().After(deadline) || ctx.Err() != nil {
			return joined, left
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (c *Config) defaults() error {
	if err := checkLoopback(c.URL); err != nil {
		return err
	}
	if c.Dashboard != "" {
		if err := checkLoopback(c.Dashboard); err != nil {
			return err
		}
		if c.User == "" {
			c.User = "admin"
		}
		if c.Consumers <= 0 {
			c.Consumers = 1
		}
	}
	if c.MetricsURL == "" {
		c.MetricsURL = "http://127.0.0.1:2113"
	}
	switch c.Target {
	case "":
		c.Target = TargetPulse
	case TargetPulse:
	case TargetFloor, TargetCentrifugo:
		if !c.Batched || c.Dashboard != "" {
			return fmt.Errorf("loadgen: target %s takes batched trackers and no dashboard", c.Target)
		}
	default:
		return fmt.Errorf("loadgen: unknown target %q (pulse, floor or centrifugo)", c.Target)
	}
	if c.Sites > 1 || c.Target == TargetFloor {
		if err := checkLoopback(c.MetricsURL); err != nil {
			return err
		}
	}
	c.Sites = max(c.Sites, 1)
	if c.Settle <= 0 {
		c.Settle = 10 * time.Second
	}
	c.Settle = min(c.Settle, time.Minute)
	if c.Site == "" {
		c.Site = "demo"
	}
	if c.Trackers <= 0 {
		c.Trackers = 100
	}
	c.Sites = min(c.Sites, c.Trackers)
	if c.Rate <= 0 {
		c.Rate = 10
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	c.Duration = min(c.Duration, maxDuration)
	if c.Ramp <= 0 {
		c.Ramp = time.Second
	}
	if c.BatchEvery <= 0 {
		c.BatchEvery = time.Second
	}
	if c.Sources <= 0 {
		c.Sources = 1
	}
	c.Sources = min(c.Sources, 254)
	return nil
}

// checkLoopback refuses any URL whose host is not a loopback address.
func checkLoopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("loadgen: url %q: want like http://127.0.0.1:8081", raw)
	}
	ip := net.ParseIP(u.Hostname())
	if u.Hostname() == "localhost" {
		ip = net.IPv4(127, 0, 0, 1)
	}
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("loadgen: %s: only loopback targets (127.0.0.0/8, ::1, localhost) are allowed", raw)
	}
	return nil
}

// siteNames returns the sites of a run (see Config.Sites).
func (c *Config) siteNames() []string {
	if c.Sites <= 1 {
		return []string{c.Site}
	}
	names := make([]string, c.Sites)
	for i := range names {
		names[i] = c.Site + "-" + strconv.Itoa(i)
	}
	return names
}

// aggregated sums pulse_aggregator_events_total of sites at the metrics
// listener base.
func aggregated(ctx context.Context, base *url.URL, sites []string) (uint64, error) {
	series, err := scrape(ctx, base, "pulse_aggregator_events_total")
	if err != nil {
		return 0, err
	}
	var sum float64
	for _, site := range sites {
		sum += series[`{site="`+site+`"}`]
	}
	return uint64(sum), nil
}

// perBatch is how many events a batched tracker's batch holds.
func (c *Config) perBatch() int { return max(1, int(c.Rate*c.BatchEvery.Seconds())) }

// tracker is one simulated visitor.
type tracker struct {
	conn        *websocket.Conn
	id          int
	site        string
	cfg         *Config
	sent, acked *atomic.Int64
	// watched, when set, counts what sent counts: the tracker sends for
	// the site the consumers watch.
	watched *atomic.Int64
	// dialed is when the tracker's dial began; hellos gets the time to
	// the node's hello.
	dialed time.Time
	hellos *histogram
}

// count counts n events sent.
func (t *tracker) count(n int64) {
	t.sent.Add(n)
	if t.watched != nil {
		t.watched.Add(n)
	}
}

// closeTracker ends a tracker's connection as a browser leaving the page
// does: a close frame, then the socket.
func closeTracker(conn *websocket.Conn) {
	_ = conn.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(websocket.CloseGoingAway, ""), time.Now().Add(500*time.Millisecond))
	_ = conn.Close()
}

// run sends until ctx ends; the connection stays open.
func (t *tracker) run(ctx context.Context) error {
	// A write blocked when sending ends gives up at once.
	stop := context.AfterFunc(ctx, func() { _ = t.conn.NetConn().SetWriteDeadline(time.Now()) })
	defer stop()
	if t.cfg.Batched {
		return t.runBatched(ctx)
	}
	every := time.Duration(float64(time.Second) / t.cfg.Rate)
	tick := time.NewTicker(every)
	defer tick.Stop()
	visitor := "load" + strconv.Itoa(t.id)
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		frame := fmt.Appendf(nil, `{"id":%q,"x":%d,"y":%d}`, visitor, n%1280, n%800)
		if err := t.conn.WriteMessage(websocket.TextMessage, frame); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		t.count(1)
	}
}

func (t *tracker) runBatched(ctx context.Context) error {
	perBatch := t.cfg.perBatch()
	// every is the batch interval: BatchEvery, or longer when the node
	// sends a rate directive. A batch keeps its size, so a slower flush
	// sends fewer events, as a real tracker sampling less often would.
	var every atomic.Int64
	every.Store(int64(t.cfg.BatchEvery))
	readErr := make(chan error, 1)
	// pings are Centrifugo's, answered here: a connection has one writer.
	pings := make(chan struct{}, 1)
	switch t.cfg.Target {
	case TargetPulse:
		var hello struct{ Type string }
		if err := t.conn.ReadJSON(&hello); err != nil {
			return fmt.Errorf("hello: %w", err)
		}
		t.hellos.add(time.Since(t.dialed), 1)
		go t.readPulse(perBatch, &every, readErr)
	case TargetCentrifugo:
		if err := t.conn.WriteMessage(websocket.TextMessage, []byte(`{"id":1,"connect":{}}`)); err != nil {
			return fmt.Errorf("connect: %w", err)
		}
		go t.readCentrifugo(perBatch, pings, readErr)
	default:
		go func() {
			_, _, err := t.conn.ReadMessage() // the floor sends nothing
			readErr <- err
		}()
	}
	// Frames as pulse.js writes them: type first.
	type trackerEvent struct {
		K  string `json:"k"`
		A  int    `json:"a"`
		X  int    `json:"x"`
		Y  int    `json:"y"`
		VW int    `json:"vw"`
		VH int    `json:"vh"`
		P  string `json:"p"`
	}
	type batch struct {
		Type   string         `json:"type"`
		Seq    uint64         `json:"seq"`
		Events []trackerEvent `json:"events"`
	}
	// publish is Centrifugo's command carrying the batch.
	type publish struct {
		ID      uint64 `json:"id"`
		Publish struct {
			Channel string `json:"channel"`
			Data    batch  `json:"data"`
		} `json:"publish"`
	}
	events := make([]trackerEvent, perBatch)
	for i := range events {
		events[i] = trackerEvent{K: "move", A: (perBatch - i) * 10, X: i % 1280, Y: i % 800, VW: 1280, VH: 800, P: "/load"}
	}
	channel := "track:" + t.site
	for seq := uint64(1); ; seq++ {
		select {
		case <-ctx.Done():
			return nil
		case err := <-readErr:
			if ctx.Err() != nil {
				return nil
			}
			return err
		case <-pings:
			if err := t.conn.WriteMessage(websocket.TextMessage, []byte("{}")); err != nil && ctx.Err() == nil {
				return err
			}
			continue
		case <-time.After(time.Duration(every.Load())):
		}
		var frame any = batch{Type: "batch", Seq: seq, Events: events}
		if t.cfg.Target == TargetCentrifugo {
			var p publish
			p.ID, p.Publish.Channel, p.Publish.Data = seq+1, channel, frame.(batch)
			frame = p
		}
		if err := t.conn.WriteJSON(frame); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		t.count(int64(perBatch))
	}
}

// readPulse reads a Pulse node's acks and rate directives until the
// connection fails. Acks are cumulative: an ack of seq acks every batch
// up to it.
func (t *tracker) readPulse(perBatch int, every *atomic.Int64, readErr chan<- error) {
	var acked uint64
	for {
		var msg struct {
			Type    string
			Seq     uint64
			FlushMs int
		}
		if err := t.conn.ReadJSON(&msg); err != nil {
			readErr <- err
			return
		}
		switch msg.Type {
		case "ack":
			if msg.Seq > acked {
				t.acked.Add(int64(msg.Seq-acked) * int64(perBatch))
				acked = msg.Seq
			}
		case "rate":
			// Like pulse.js: flush as often as the node says.
			if msg.FlushMs > 0 {
				every.Store(int64(max(t.cfg.BatchEvery, time.Duration(msg.FlushMs)*time.Millisecond)))
			}
		}
	}
}

// readCentrifugo reads Centrifugo's replies until the connection fails:
// its connect reply, a reply to each publish (counted as the batch's
// ack) and its pings (an empty reply, which the sender answers with an
// empty command). One frame may hold several replies, a line each.
func (t *tracker) readCentrifugo(perBatch int, pings chan<- struct{}, readErr chan<- error) {
	for {
		_, data, err := t.conn.ReadMessage()
		if err != nil {
			readErr <- err
			return
		}
		for line := range bytes.Lines(data) {
			var reply struct {
				ID      uint64          `json:"id"`
				Error   json.RawMessage `json:"error"`
				Publish json.RawMessage `json:"publish"`
			}
			if err := json.Unmarshal(line, &reply); err != nil {
				readErr <- fmt.Errorf("centrifugo: %w", err)
				return
			}
			switch {
			case reply.Error != nil:
				readErr <- fmt.Errorf("centrifugo: command %d: %s", reply.ID, reply.Error)
				return
			case reply.Publish != nil:
				t.acked.Add(int64(perBatch))
			case reply.ID == 0:
				select {
				case pings <- struct{}{}:
				default:
				}
			}
		}
	}
}
