package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/pulse-analytics/pulse/event"
)

const (
	testPassword = "correct horse battery staple"
	testToken    = "test-api-token"
)

// startPulse runs the system in-process on random loopback ports with its
// data under dir, and closes it when the test ends (unless the test closes
// it first).
func startPulse(t testing.TB, dir string, edit func(*Config)) *Main {
	t.Helper()
	m := newTestMain(t, dir, edit)
	if err := m.Run(context.Background()); err != nil {
		_ = m.Close()
		t.Fatalf("run pulse: %v", err)
	}
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { _ = m.Close() }) })
	return m
}

// newTestMain is a Main configured as startPulse runs it: every listener
// on a free loopback port, dir its data directory, the test's password
// and token, then edit.
func newTestMain(t testing.TB, dir string, edit func(*Config)) *Main {
	m := NewMain()
	m.Config.IngestAddr = "127.0.0.1:0"
	m.Config.DashboardAddr = "127.0.0.1:0"
	m.Config.MetricsAddr = "127.0.0.1:0"
	m.Config.DataDir = dir
	m.Config.AdminPassword = testPassword
	m.Config.APIToken = testToken
	m.Config.IngestAckInterval = testAckInterval
	if edit != nil {
		edit(&m.Config)
	}
	m.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return m
}

// testAckInterval: trackers in tests send a batch and wait for its ack,
// which the default ack interval (10 s) would put off.
const testAckInterval = 20 * time.Millisecond

// testWriter sends logs to t.Log, so they show only for failing tests.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// checkFor calls fn every `every` until it returns nil or `wait` passes,
// then fails the test with fn's last error.
func checkFor(t testing.TB, wait, every time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", wait, err)
		}
		time.Sleep(every)
	}
}

// get returns the body of a GET that must answer 200.
func get(t testing.TB, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", u, resp.Status, b)
	}
	return string(b)
}

// stats fetches /api/v1/stats for site with the API token.
func stats(dashURL, site string) (event.Overview, error) {
	var ov event.Overview
	req, _ := http.NewRequest("GET", dashURL+"/api/v1/stats?site="+site, nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ov, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return ov, fmt.Errorf("stats: %s: %s", resp.Status, b)
	}
	return ov, json.NewDecoder(resp.Body).Decode(&ov)
}

// waitStats waits until the site's stats satisfy ok.
func waitStats(t testing.TB, dashURL, site string, ok func(event.Overview) error) event.Overview {
	t.Helper()
	var ov event.Overview
	checkFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		var err error
		if ov, err = stats(dashURL, site); err != nil {
			return err
		}
		return ok(ov)
	})
	return ov
}

// login returns an HTTP client with a dashboard session.
func login(t testing.TB, dashURL string) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, err := c.PostForm(dashURL+"/login", url.Values{"username": {"admin"}, "password": {testPassword}})
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/" {
		t.Fatalf("login: %s, ended at %s", resp.Status, resp.Request.URL)
	}
	return c
}

// sseEvent is one parsed Server-Sent Event.
type sseEvent struct {
	ID, Event, Data string
}

// readSSE parses an event stream, sending each event on the returned
// channel until the stream ends.
func readSSE(body io.Reader) <-chan sseEvent {
	ch := make(chan sseEvent, 64)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.Event != "" || ev.Data != "" {
					ch <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				ev.ID = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.Event = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.Data += line[6:]
			}
		}
	}()
	return ch
}

// dialerFrom dials from the loopback address src.
func dialerFrom(src string) *net.Dialer {
	return &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
}

// trackerClient speaks the tracker protocol (v=1) like pulse.js does.
type trackerClient struct {
	ws      *websocket.Conn
	session string
}

func dialTracker(t testing.TB, ingestURL, site, sid string) *trackerClient {
	t.Helper()
	return dialTrackerFrom(t, "", ingestURL, site, sid)
}

// dialTrackerFrom is dialTracker from the loopback address src (empty:
// any).
func dialTrackerFrom(t testing.TB, src, ingestURL, site, sid string) *trackerClient {
	t.Helper()
	u := "ws" + strings.TrimPrefix(ingestURL, "http") + "/v1/track?v=1&site=" + site
	if sid != "" {
		u += "&sid=" + sid
	}
	dialer := *websocket.DefaultDialer
	if src != "" {
		dialer.NetDial = dialerFrom(src).Dial
	}
	ws, _, err := dialer.Dial(u, nil)
	if err != nil {
		t.Fatalf("dial tracker: %v", err)
	}
	// The cleanup also keeps the connection reachable to the end of the
	// test: a socket the garbage collector finds unreachable is closed
	// by its finalizer, and the tracker would leave half-way.
	t.Cleanup(func() { ws.Close() })
	var hello struct {
		Type    string `json:"type"`
		Session string `json:"session"`
	}
	if err := ws.ReadJSON(&hello); err != nil || hello.Type != "hello" {
		t.Fatalf("hello: %+v, %v", hello, err)
	}
	return &trackerClient{ws: ws, session: hello.Session}
}

// sendBatch sends n events of kind as batch seq and waits for its ack.
func (c *trackerClient) sendBatch(t testing.TB, seq uint64, kind string, n int) {
	t.Helper()
	events := make([]map[string]any, n)
	for i := range events {
		events[i] = map[string]any{"k": kind, "a": 10, "x": i, "y": i, "vw": 1280, "vh": 720, "p": "/"}
	}
	if err := c.ws.WriteJSON(map[string]any{"type": "batch", "seq": seq, "events": events}); err != nil {
		t.Fatalf("send batch %d: %v", seq, err)
	}
	var ack struct {
		Type string `json:"type"`
		Seq  uint64 `json:"seq"`
	}
	if err := c.ws.ReadJSON(&ack); err != nil || ack.Type != "ack" || ack.Seq != seq {
		t.Fatalf("ack of batch %d: %+v, %v", seq, ack, err)
	}
}

// cutProxy forwards TCP connections from a loopback port to target, and
// can cut every connection and refuse new ones for a while: a network
// outage between a browser and a server.
type cutProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	conns map[net.Conn]bool
	down  bool
}

func startCutProxy(t testing.TB, targetURL string) *cutProxy {
	t.Helper()
	u, _ := url.Parse(targetURL)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: u.Host, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			down := p.down
			if !down {
				p.conns[c] = true
			}
			p.mu.Unlock()
			if down {
				c.Close()
				continue
			}
			go p.forward(c)
		}
	}()
	return p
}

func (p *cutProxy) URL() string { return "http://" + p.ln.Addr().String() }

func (p *cutProxy) forward(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[up] = true
	p.mu.Unlock()
	go func() { _, _ = io.Copy(up, c); up.Close() }()
	_, _ = io.Copy(c, up)
	c.Close()
}

// cut closes every connection and refuses new ones until restore.
func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
	p.conns = map[net.Conn]bool{}
}

func (p *cutProxy) restore() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}
