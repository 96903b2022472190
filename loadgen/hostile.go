package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// HostileConfig configures a hostile-load run: well-behaved trackers that
// must all be served and counted exactly, while attackers, each kind from
// an address of its own, do what one address can to stall the node:
//
//   - ping flooders (127.0.0.2) send thousands of pings and never read;
//   - half-frame senders (127.0.0.3) announce a 64 KiB frame and send it a
//     byte a second;
//   - path flooders (127.0.0.4) are trackers of FloodSite that send every
//     event on a new page path, growing the aggregator's maps;
//   - SSE flooders (127.0.0.5) open dashboard streams with a session and
//     never read them, and as many without a session;
//   - silent holders (127.0.0.6) open connections to the ingest node and
//     send nothing, twice as many as one address may hold, reconnecting
//     as soon as one is closed.
//
// Meanwhile a new tracker connects every 200 ms from 127.0.0.1, timing
// its hello, and the node's /readyz is read as often.
type HostileConfig struct {
	// URL is the ingest node and Dashboard its dashboard, both loopback
	// only and required: the good trackers' events are counted there.
	URL, Dashboard string
	User, Password string // default user "admin"
	// MetricsURL, when set, is the node's metrics listener, whose
	// refusals by reason the report gives.
	MetricsURL string
	// Site is the good trackers' site (default "demo"); FloodSite the
	// path flooders' (default "flood"), which must be registered.
	Site, FloodSite string
	// Trackers send Rate events a second each in one batch a second.
	// Defaults 1,000 and 20.
	Trackers int
	Rate     float64
	// How many of each attacker run at once. Defaults 300, 300, 50,
	// 200, 2,000.
	PingFlooders, HalfFrames, PathFlooders, SSEFlooders, SilentHolders int
	// Duration bounds the sending after the Ramp, over which the good
	// trackers start. Defaults 30 s (at most 10 min) and 3 s.
	Duration, Ramp time.Duration
	// Settle bounds the wait for every good event to be acked and
	// counted after the sending. Default 30 s, at most 1 min.
	Settle time.Duration
	// ServerPID, when set, is the node's process, whose largest RSS
	// during the run the report gives.
	ServerPID int
}

// HostileReport is what a hostile run measured.
type HostileReport struct {
	Seconds float64 `json:"seconds"`
	// The good trackers: events sent (each once, however often re-sent),
	// how much the site's count grew, and their reconnects.
	Trackers   int    `json:"trackers"`
	Sent       int64  `json:"sent"`
	Counted    uint64 `json:"counted"`
	Unacked    int64  `json:"unackedAtEnd"`
	Reconnects int64  `json:"reconnects"`
	// Hellos of the new trackers after the ramp, in milliseconds.
	Hellos      int     `json:"hellos"`
	HelloP50Ms  float64 `json:"helloP50Ms"`
	HelloMaxMs  float64 `json:"helloMaxMs"`
	HelloFailed int     `json:"helloFailed"`
	// NotReady counts /readyz answers other than 200, of Probes.
	Probes   int `json:"readyzProbes"`
	NotReady int `json:"readyzNotReady"`
	// Attacks counts connections each kind of attacker got (upgraded,
	// SSE streams answered 200, silent connections held a second or
	// more), Refused the answers that refused them, by kind and status
	// ("closed" for a silent connection closed within a second).
	Attacks map[string]int64            `json:"attacks"`
	Refused map[string]map[string]int64 `json:"refused"`
	// ServerRejected is the node's pulse_ingest_rejected_total by
	// reason, grown during the run (with MetricsURL).
	ServerRejected map[string]float64 `json:"serverRejected,omitempty"`
	// ServerRefusedConns is its pulse_connections_refused_total by
	// reason, grown during the run (with MetricsURL): connections closed
	// as soon as they were accepted.
	ServerRefusedConns map[string]float64 `json:"serverRefusedConns,omitempty"`
	// ServerMaxRSSMegabytes is the node's largest RSS, sampled each
	// second, and ServerCPUCores its CPU time over the run's (with
	// ServerPID).
	ServerMaxRSSMegabytes float64 `json:"serverMaxRssMB,omitempty"`
	ServerCPUCores        float64 `json:"serverCpuCores,omitempty"`
}

// JSON returns the report as indented JSON.
func (r HostileReport) JSON() string {
	b, _ := json.MarshalIndent(r, "", "  ")
	return string(b)
}

func (c *HostileConfig) defaults() error {
	if c.Dashboard == "" {
		return fmt.Errorf("loadgen: a hostile run needs the dashboard, to count the good trackers' events")
	}
	for _, u := range []string{c.URL, c.Dashboard, c.MetricsURL} {
		if u == "" {
			continue
		}
		if err := checkLoopback(u); err != nil {
			return err
		}
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.Trackers, 1000)
	def(&c.PingFlooders, 300)
	def(&c.HalfFrames, 300)
	def(&c.PathFlooders, 50)
	def(&c.SSEFlooders, 200)
	def(&c.SilentHolders, 2000)
	if c.User == "" {
		c.User = "admin"
	}
	if c.Site == "" {
		c.Site = "demo"
	}
	if c.FloodSite == "" {
		c.FloodSite = "flood"
	}
	if c.Rate <= 0 {
		c.Rate = 20
	}
	if c.Duration <= 0 {
		c.Duration = 30 * time.Second
	}
	c.Duration = min(c.Duration, maxDuration)
	if c.Ramp <= 0 {
		c.Ramp = 3 * time.Second
	}
	if c.Settle <= 0 {
		c.Settle = 30 * time.Second
	}
	c.Settle = min(c.Settle, time.Minute)
	return nil
}

// hostileRun is one run's shared state.
type hostileRun struct {
	cfg  HostileConfig
	host string // the ingest node's host:port

	sent, unacked, reconnects atomic.Int64

	mu      sync.Mutex
	attacks map[string]int64
	refused map[string]map[string]int64
}

func (h *hostileRun) count(kind string, status int) {
	if status == http.StatusOK || status == http.StatusSwitchingProtocols {
		h.got(kind)
		return
	}
	h.refuse(kind, strconv.Itoa(status))
}

func (h *hostileRun) got(kind string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.attacks[kind]++
}

func (h *hostileRun) refuse(kind, answer string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.refused[kind] == nil {
		h.refused[kind] = make(map[string]int64)
	}
	h.refused[kind][answer]++
}

// RunHostile runs the hostile load and reports. It fails only when it
// cannot measure (no dashboard login); what the node did is the report.
func RunHostile(ctx context.Context, cfg HostileConfig) (HostileReport, error) {
	if err := cfg.defaults(); err != nil {
		return HostileReport{}, err
	}
	u, _ := url.Parse(cfg.URL)
	h := &hostileRun{cfg: cfg, host: u.Host, attacks: map[string]int64{}, refused: map[string]map[string]int64{}}
	du, _ := url.Parse(cfg.Dashboard)
	dash, err := login(ctx, du, cfg.User, cfg.Password, cfg.Site)
	if err != nil {
		return HostileReport{}, err
	}
	base, err := dash.total(ctx)
	if err != nil {
		return HostileReport{}, err
	}
	var metrics *url.URL
	var rejectedBefore, refusedBefore map[string]float64
	if cfg.MetricsURL != "" {
		metrics, _ = url.Parse(cfg.MetricsURL)
		if rejectedBefore, err = scrape(ctx, metrics, "pulse_ingest_rejected_total"); err != nil {
			return HostileReport{}, err
		}
		if refusedBefore, err = scrape(ctx, metrics, "pulse_connections_refused_total"); err != nil {
			return HostileReport{}, err
		}
	}

	var cpuBefore procStat
	if cfg.ServerPID != 0 {
		if cpuBefore, err = readProc(cfg.ServerPID); err != nil {
			return HostileReport{}, err
		}
	}
	start := time.Now()
	// attackCtx ends the attacks and the probes; sendCtx the good
	// trackers' sending, after which they wait for their acks until ctx
	// or the settle time ends.
	attackCtx, stopAttacks := context.WithTimeout(ctx, cfg.Ramp+cfg.Duration)
	defer stopAttacks()
	settleCtx, stopSettling := context.WithTimeout(ctx, cfg.Ramp+cfg.Duration+cfg.Settle)
	defer stopSettling()
	var wg sync.WaitGroup
	repeat := func(n int, run func()) {
		for range n {
			wg.Go(func() {
				for attackCtx.Err() == nil {
					run()
				}
			})
		}
	}
	ping := bytes.Repeat(maskedFrame(0x9, bytes.Repeat([]byte{'p'}, 125)), 2000)
	repeat(cfg.PingFlooders, func() { h.rawAttack(attackCtx, "ping", net.IPv4(127, 0, 0, 2), ping, 0) })
	half := maskedFrame(0x1, bytes.Repeat([]byte{' '}, 64<<10))[:4096]
	repeat(cfg.HalfFrames, func() { h.rawAttack(attackCtx, "half_frame", net.IPv4(127, 0, 0, 3), half, time.Second) })
	// The session's streams are dialled from 127.0.0.5 too: the stream
	// limit is the user's, wherever they come from.
	withSession := &http.Client{Jar: dash.client.Jar, Transport: sourceTransport(net.IPv4(127, 0, 0, 5), cfg.SSEFlooders)}
	repeat(cfg.SSEFlooders/2, func() { h.sseAttack(attackCtx, du, withSession, "sse_session") })
	anonymous := &http.Client{Transport: sourceTransport(net.IPv4(127, 0, 0, 5), cfg.SSEFlooders)}
	repeat(cfg.SSEFlooders-cfg.SSEFlooders/2, func() { h.sseAttack(attackCtx, du, anonymous, "sse_anonymous") })
	repeat(cfg.SilentHolders, func() { h.silentAttack(attackCtx, net.IPv4(127, 0, 0, 6)) })
	for i := range cfg.PathFlooders {
		wg.Go(func() {
			t := &resendingTracker{h: h, site: cfg.FloodSite, from: net.IPv4(127, 0, 0, 4), id: i, newPaths: true}
			t.run(attackCtx, attackCtx)
		})
	}

	// The good trackers.
	var good sync.WaitGroup
	for i := range cfg.Trackers {
		delay := cfg.Ramp * time.Duration(i) / time.Duration(cfg.Trackers)
		good.Go(func() {
			select {
			case <-time.After(delay):
			case <-attackCtx.Done():
				return
			}
			t := &resendingTracker{h: h, site: cfg.Site, from: net.IPv4(127, 0, 1, byte(1+i%200)), id: i}
			t.run(attackCtx, settleCtx)
		})
	}

	// The probes: new trackers' hellos, /readyz, the node's RSS.
	var hellos []time.Duration
	var helloFailed, probes, notReady int
	var maxRSS int64
	probeDone := make(chan struct{})
	go func() {
		defer close(probeDone)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for n := 0; attackCtx.Err() == nil; n++ {
			began := time.Now()
			if d, err := h.hello(attackCtx); err != nil {
				if attackCtx.Err() == nil {
					helloFailed++
				}
			} else if began.Sub(start) > cfg.Ramp {
				hellos = append(hellos, d)
			}
			probes++
			if !h.ready(attackCtx) && attackCtx.Err() == nil {
				notReady++
			}
			if cfg.ServerPID != 0 && n%5 == 0 {
				if p, err := readProc(cfg.ServerPID); err == nil {
					maxRSS = max(maxRSS, p.rssBytes)
				}
			}
			select {
			case <-tick.C:
			case <-attackCtx.Done():
			}
		}
	}()

	good.Wait()
	<-probeDone
	// Count until every good event is, as long as the count moves.
	last, lastMove := uint64(0), time.Now()
	for {
		total, err := dash.total(ctx)
		if err == nil && total != last {
			last, lastMove = total, time.Now()
		}
		if last-base >= uint64(h.sent.Load()) || time.Since(lastMove) > 10*time.Second || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	stopAttacks()
	wg.Wait()

	r := HostileReport{
		Seconds: time.Since(start).Seconds(), Trackers: cfg.Trackers,
		Sent: h.sent.Load(), Counted: last - base, Unacked: h.unacked.Load(), Reconnects: h.reconnects.Load(),
		HelloFailed: helloFailed, Probes: probes, NotReady: notReady,
		Attacks: h.attacks, Refused: h.refused, ServerMaxRSSMegabytes: float64(maxRSS) / (1 << 20),
	}
	if cfg.ServerPID != 0 {
		if p, err := readProc(cfg.ServerPID); err == nil {
			r.ServerCPUCores = (p.cpuSeconds - cpuBefore.cpuSeconds) / r.Seconds
		}
	}
	if len(hellos) > 0 {
		slices.Sort(hellos)
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		r.Hellos, r.HelloP50Ms, r.HelloMaxMs = len(hellos), ms(hellos[len(hellos)/2]), ms(hellos[len(hellos)-1])
	}
	if metrics != nil {
		if r.ServerRejected, err = grown(metrics, "pulse_ingest_rejected_total", rejectedBefore); err != nil {
			return r, err
		}
		if r.ServerRefusedConns, err = grown(metrics, "pulse_connections_refused_total", refusedBefore); err != nil {
			return r, err
		}
	}
	return r, nil
}

// grown is how much each series of counter at metrics grew since before.
func grown(metrics *url.URL, counter string, before map[string]float64) (map[string]float64, error) {
	after, err := scrape(context.Background(), metrics, counter)
	if err != nil {
		return nil, err
	}
	g := make(map[string]float64)
	for k, v := range after {
		if v -= before[k]; v > 0 {
			g[k] = v
		}
	}
	return g, nil
}

// sourceTransport dials from the loopback address ip and keeps up to
// idle connections for the next requests, as a browser would: a refused
// stream's connection carries the next attempt.
func sourceTransport(ip net.IP, idle int) *http.Transport {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}}
	return &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: idle}
}

// maskedFrame is a final client frame of opcode op, masked with a zero
// key (valid, and the payload stays readable).
func maskedFrame(op byte, payload []byte) []byte {
	f := []byte{0x80 | op}
	switch n := len(payload); {
	case n < 126:
		f = append(f, 0x80|byte(n))
	case n < 1<<16:
		f = append(f, 0x80|126, byte(n>>8), byte(n))
	default:
		f = append(f, 0x80|127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	f = append(f, 0, 0, 0, 0)
	return append(f, payload...)
}

// rawAttack upgrades a tracker connection from ip by hand, then writes
// payload, and then, if trickle is set, one more byte of it every trickle,
// never reading, until the node closes it or ctx ends.
func (h *hostileRun) rawAttack(ctx context.Context, kind string, ip net.IP, payload []byte, trickle time.Duration) {
	c, done := h.attackConn(ctx, ip)
	if c == nil {
		return
	}
	defer done()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "GET /v1/track?v=1&site=%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", url.QueryEscape(h.cfg.Site), h.host)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return
	}
	h.count(kind, resp.StatusCode)
	if resp.StatusCode != http.StatusSwitchingProtocols {
		retrySoon(ctx, c)
		return
	}
	_ = c.SetDeadline(time.Time{})
	if _, err := c.Write(payload); err != nil || trickle == 0 {
		return
	}
	for b := []byte{' '}; ; {
		if !sleep(ctx, trickle) {
			return
		}
		if _, err := c.Write(b); err != nil {
			return
		}
	}
}

// silentAttack opens a connection to the ingest node from ip and sends
// nothing, until the node closes it (its header timeout) or ctx ends.
// One closed within a second was refused at accept.
func (h *hostileRun) silentAttack(ctx context.Context, ip net.IP) {
	c, done := h.attackConn(ctx, ip)
	if c == nil {
		return
	}
	defer done()
	opened := time.Now()
	_, _ = c.Read(make([]byte, 1))
	switch {
	case time.Since(opened) >= time.Second:
		h.got("silent")
		return
	case ctx.Err() != nil:
		return
	}
	h.refuse("silent", "closed")
	retrySoon(ctx, c)
}

// attackConn dials the ingest node from ip for an attacker; the
// connection closes when ctx ends, or with done. It is nil, after a
// pause, when the dial fails.
func (h *hostileRun) attackConn(ctx context.Context, ip net.IP) (c net.Conn, done func()) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "tcp", h.host)
	if err != nil {
		sleep(ctx, 100*time.Millisecond)
		return nil, nil
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	return c, func() {
		stop()
		c.Close()
	}
}

// retrySoon is what an attacker refused does: it ends the connection with
// a reset, leaving no TIME_WAIT behind (which would use up its address's
// ports in seconds), and tries again soon.
func retrySoon(ctx context.Context, c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	sleep(ctx, 100*time.Millisecond)
}

// sseAttack opens a dashboard stream with client and never reads it,
// until the dashboard gives up on it or 20 s pass.
func (h *hostileRun) sseAttack(ctx context.Context, dash *url.URL, client *http.Client, kind string) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	u := dash.JoinPath("/sse")
	u.RawQuery = url.Values{"site": {h.cfg.Site}}.Encode()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	resp, err := client.Do(req)
	if err != nil {
		sleep(ctx, 100*time.Millisecond)
		return
	}
	defer resp.Body.Close()
	h.count(kind, resp.StatusCode)
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096)) // so the connection is kept
		sleep(ctx, 100*time.Millisecond)
		return
	}
	<-ctx.Done()
}

// hello connects a new tracker from 127.0.0.1 and times its hello.
func (h *hostileRun) hello(ctx context.Context) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	c, _, err := websocket.DefaultDialer.DialContext(ctx, "ws://"+h.host+"/v1/track?v=1&site="+url.QueryEscape(h.cfg.Site), nil)
	if err != nil {
		return 0, err
	}
	defer closeTracker(c)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var hello struct{ Type string }
	if err := c.ReadJSON(&hello); err != nil || hello.Type != "hello" {
		return 0, fmt.Errorf("hello: %q %v", hello.Type, err)
	}
	return time.Since(start), nil
}

// ready reports whether the node's /readyz answers 200.
func (h *hostileRun) ready(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+h.host+"/readyz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// sleep waits d unless ctx ends first, and reports whether it waited.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// resendingTracker speaks the tracker protocol as pulse.js does: a batch
// a second, kept until acked; after a lost connection it reconnects with
// its session, after a jittered backoff, and re-sends what was not acked,
// so the node drops the duplicates and every event counts once.
type resendingTracker struct {
	h        *hostileRun
	site     string
	from     net.IP
	id       int
	newPaths bool // every event on a new page path (the path flooders)

	session string
	seq     uint64
	mu      sync.Mutex
	unacked []pendingBatch
}

type pendingBatch struct {
	seq    uint64
	events int
	frame  []byte
}

// run sends until sending ends, then waits for the acks of what it sent
// until settled ends, and closes.
func (t *resendingTracker) run(sending, settled context.Context) {
	if !t.newPaths {
		defer func() { t.h.unacked.Add(int64(t.pending())) }()
	}
	for attempt := 0; settled.Err() == nil; attempt++ {
		if attempt > 0 {
			t.h.reconnects.Add(1)
			backoff := time.Duration(min(attempt, 5)) * 100 * time.Millisecond
			if !sleep(settled, backoff/2+rand.N(backoff)) {
				return
			}
		}
		if t.connected(sending, settled) {
			return
		}
	}
}

func (t *resendingTracker) pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, b := range t.unacked {
		n += b.events
	}
	return n
}

// connected runs one connection: it reports true when the tracker is
// done (everything acked after sending ended), false to reconnect.
func (t *resendingTracker) connected(sending, settled context.Context) bool {
	u := "ws://" + t.h.host + "/v1/track?v=1&site=" + url.QueryEscape(t.site)
	if t.session != "" {
		u += "&sid=" + t.session
	}
	d := websocket.Dialer{
		HandshakeTimeout: 10 * time.Second,
		NetDialContext:   (&net.Dialer{LocalAddr: &net.TCPAddr{IP: t.from}}).DialContext,
	}
	c, _, err := d.DialContext(settled, u, nil)
	if err != nil {
		return false
	}
	defer closeTracker(c)
	stop := context.AfterFunc(settled, func() { _ = c.NetConn().Close() })
	defer stop()
	var hello struct{ Type, Session string }
	if err := c.ReadJSON(&hello); err != nil || hello.Type != "hello" {
		return false
	}
	t.session = hello.Session
	allAcked := make(chan struct{}, 1)
	readErr := make(chan error, 1)
	go func() {
		for {
			var msg struct {
				Type string
				Seq  uint64
			}
			if err := c.ReadJSON(&msg); err != nil {
				readErr <- err
				return
			}
			if msg.Type == "ack" {
				t.mu.Lock()
				for len(t.unacked) > 0 && t.unacked[0].seq <= msg.Seq {
					t.unacked = t.unacked[1:]
				}
				if len(t.unacked) == 0 {
					select {
					case allAcked <- struct{}{}:
					default:
					}
				}
				t.mu.Unlock()
			}
		}
	}()
	t.mu.Lock()
	resend := slices.Clone(t.unacked)
	t.mu.Unlock()
	for _, b := range resend {
		if c.WriteMessage(websocket.TextMessage, b.frame) != nil {
			return false
		}
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		if sending.Err() != nil && t.pending() == 0 {
			return true
		}
		select {
		case <-readErr:
			return false
		case <-allAcked:
			continue
		case <-settled.Done():
			return true
		case <-tick.C:
		}
		if sending.Err() != nil {
			continue
		}
		b := t.batch()
		if c.WriteMessage(websocket.TextMessage, b.frame) != nil {
			return false
		}
	}
}

// batch makes the next batch and keeps it until acked.
func (t *resendingTracker) batch() pendingBatch {
	t.seq++
	n := max(1, int(t.h.cfg.Rate))
	type ev struct {
		K  string `json:"k"`
		A  int    `json:"a"`
		X  int    `json:"x"`
		Y  int    `json:"y"`
		VW int    `json:"vw"`
		VH int    `json:"vh"`
		P  string `json:"p"`
	}
	events := make([]ev, n)
	for i := range events {
		p := "/load"
		if t.newPaths {
			p = fmt.Sprintf("/flood/%d/%d/%d", t.id, t.seq, i)
		}
		events[i] = ev{K: "move", A: (n - i) * 10, X: i % 1280, Y: i % 800, VW: 1280, VH: 800, P: p}
	}
	frame, _ := json.Marshal(struct {
		Type   string `json:"type"`
		Seq    uint64 `json:"seq"`
		Events []ev   `json:"events"`
	}{"batch", t.seq, events})
	b := pendingBatch{seq: t.seq, events: n, frame: frame}
	t.mu.Lock()
	t.unacked = append(t.unacked, b)
	t.mu.Unlock()
	if !t.newPaths {
		t.h.sent.Add(int64(n))
	}
	return b
}
