package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pulse-analytics/pulse/event"
)

// The cluster tests run the real topology on loopback: three nats-server
// processes built from the nats-server module, clustered with JetStream,
// and the pulse parts as separate processes. They take a while, so
// `go test -short` skips them.

// buildBinaries builds nats-server and pulse into dir.
func buildBinaries(t *testing.T, dir string) (natsBin, pulseBin string) {
	t.Helper()
	natsBin, pulseBin = filepath.Join(dir, "nats-server"), filepath.Join(dir, "pulse")
	for bin, pkg := range map[string]string{natsBin: "github.com/nats-io/nats-server/v2", pulseBin: "."} {
		out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	return natsBin, pulseBin
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// proc is a child process whose output goes to a log file in the test's
// directory.
type proc struct {
	name string
	cmd  *exec.Cmd
	args []string
	env  []string
	log  string
	bin  string
	done chan struct{} // closed when the process has ended
}

func (p *proc) start(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(p.bin, p.args...)
	p.cmd.Env = append(os.Environ(), p.env...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.name, err)
	}
	cmd, done := p.cmd, make(chan struct{})
	p.done = done
	go func() { _ = cmd.Wait(); f.Close(); close(done) }()
}

// kill ends the process at once, as a crash would (SIGKILL).
func (p *proc) kill() { _ = p.cmd.Process.Kill() }

// stop ends the process gracefully (SIGTERM) and waits for it.
func (p *proc) stop(t *testing.T) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Errorf("%s did not stop on SIGTERM", p.name)
		p.kill()
		<-p.done
	}
}

type cluster struct {
	dir       string
	natsURLs  []string
	nats      []*proc
	pulseBin  string
	ingest    []*proc
	ingestURL []string
	// aggs are two aggregators sharing the partitions (slices 0/2, 1/2);
	// agg is the one that owns site demo's.
	aggs    []*proc
	agg     *proc
	dash    *proc
	dashURL string
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	dir := t.TempDir()
	natsBin, pulseBin := buildBinaries(t, dir)
	c := &cluster{dir: dir, pulseBin: pulseBin}
	var routes []string
	clientPorts := make([]int, 3)
	for i := range 3 {
		clientPorts[i] = freePort(t)
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", freePort(t)))
	}
	for i := range 3 {
		c.natsURLs = append(c.natsURLs, fmt.Sprintf("nats://127.0.0.1:%d", clientPorts[i]))
		p := &proc{
			name: fmt.Sprintf("nats-%d", i), bin: natsBin, log: filepath.Join(dir, fmt.Sprintf("nats-%d.log", i)),
			args: []string{
				"-a", "127.0.0.1", "-p", strconv.Itoa(clientPorts[i]), "-n", fmt.Sprintf("n%d", i),
				"-js", "-sd", filepath.Join(dir, fmt.Sprintf("js-%d", i)),
				"--cluster_name", "pulse", "--cluster", routes[i], "--routes", strings.Join(routes, ","),
			},
		}
		p.start(t)
		c.nats = append(c.nats, p)
	}
	t.Cleanup(func() {
		for _, p := range append(append(append([]*proc{c.dash}, c.aggs...), c.ingest...), c.nats...) {
			if p != nil && p.cmd != nil {
				p.kill()
			}
		}
		if t.Failed() {
			logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
			// PULSE_CLUSTER_LOGS=dir keeps the whole logs of a failed run.
			if keep := os.Getenv("PULSE_CLUSTER_LOGS"); keep != "" {
				_ = os.MkdirAll(keep, 0o755)
				for _, l := range logs {
					b, _ := os.ReadFile(l)
					_ = os.WriteFile(filepath.Join(keep, filepath.Base(l)), b, 0o644)
				}
			}
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				var keep []string
				for _, line := range strings.Split(string(b), "\n") {
					if !strings.Contains(line, "level=DEBUG") && !strings.Contains(line, "[DBG]") && !strings.Contains(line, "[INF]") {
						keep = append(keep, line)
					}
				}
				out := strings.Join(keep, "\n")
				if len(out) > 6000 {
					out = out[len(out)-6000:]
				}
				t.Logf("--- %s (end)\n%s", filepath.Base(l), out)
			}
		}
	})
	// JetStream is usable once the cluster has elected a meta leader.
	var nc *nats.Conn
	checkFor(t, 30*time.Second, 100*time.Millisecond, func() (err error) {
		nc, err = nats.Connect(strings.Join(c.natsURLs, ","), nats.MaxReconnects(-1))
		return err
	})
	defer nc.Close()
	js, _ := jetstream.New(nc)
	checkFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := js.AccountInfo(ctx)
		return err
	})

	// The aggregators write no snapshot during a test (a minute apart):
	// one restarted after a kill starts from no snapshot and replays
	// the stream, the case in which its panel versions are furthest
	// behind those the killed one published.
	for i := range 2 {
		a := c.pulse(fmt.Sprintf("aggregator-%d", i), "aggregator", "-metrics-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
			"-aggregator-slice", fmt.Sprintf("%d/2", i), "-snapshot-every", "1m")
		a.start(t)
		c.aggs = append(c.aggs, a)
	}
	c.agg = c.aggs[event.Partition("demo")%2]
	for i := range 2 {
		port := freePort(t)
		p := c.pulse(fmt.Sprintf("ingest-%d", i), "ingest", "-ingest-addr", fmt.Sprintf("127.0.0.1:%d", port), "-metrics-addr", "127.0.0.1:0", "-quote-source", "off",
			"-ingest-ack-interval", testAckInterval.String())
		p.start(t)
		c.ingest = append(c.ingest, p)
		c.ingestURL = append(c.ingestURL, fmt.Sprintf("http://127.0.0.1:%d", port))
	}
	dashPort := freePort(t)
	c.dash = c.pulse("dashboard", "dashboard", "-dashboard-addr", fmt.Sprintf("127.0.0.1:%d", dashPort), "-metrics-addr", "127.0.0.1:0")
	c.dash.start(t)
	c.dashURL = fmt.Sprintf("http://127.0.0.1:%d", dashPort)
	for _, u := range append([]string{c.dashURL}, c.ingestURL...) {
		waitReadyz(t, u, http.StatusOK)
	}
	// No -replicas was given: the parts chose 3, one per server, so that
	// losing the server holding a stream loses nothing.
	for _, name := range []string{event.StreamActivity, "KV_pulse_state"} {
		st, err := js.Stream(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		if info := st.CachedInfo(); info.Config.Replicas != 3 {
			t.Fatalf("%s has %d replicas, want 3", name, info.Config.Replicas)
		}
	}
	return c
}

// diagnose logs the streams' and consumers' state. Each call has its own
// time: one consumer on a dead server must not hide the rest.
func (c *cluster) diagnose(t *testing.T) {
	nc, err := nats.Connect(strings.Join(c.natsURLs, ","))
	if err != nil {
		t.Logf("diagnose: %v", err)
		return
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	call := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), 3*time.Second)
	}
	for _, name := range []string{event.StreamActivity, event.StreamQuotes} {
		ctx, cancel := call()
		st, err := js.Stream(ctx, name)
		cancel()
		if err != nil {
			t.Logf("stream %s: %v", name, err)
			continue
		}
		info := st.CachedInfo()
		t.Logf("stream %s: %+v, leader %s", name, info.State, info.Cluster.Leader)
		ctx, cancel = call()
		names := st.ConsumerNames(ctx)
		for cons := range names.Name() {
			cctx, ccancel := call()
			ci, err := st.Consumer(cctx, cons)
			ccancel()
			if err != nil {
				t.Logf("consumer %s: %v", cons, err)
				continue
			}
			i := ci.CachedInfo()
			t.Logf("consumer %s: delivered %+v, ack floor %+v, pending %d, ack pending %d, redelivered %d, leader %s",
				i.Name, i.Delivered, i.AckFloor, i.NumPending, i.NumAckPending, i.NumRedelivered, i.Cluster.Leader)
		}
		if err := names.Err(); err != nil {
			t.Logf("consumers of %s: %v", name, err)
		}
		cancel()
	}
}

// pulse makes (without starting) a pulse process of mode.
func (c *cluster) pulse(name, mode string, args ...string) *proc {
	return &proc{
		name: name, bin: c.pulseBin, log: filepath.Join(c.dir, name+".log"),
		args: append([]string{mode, "-nats", strings.Join(c.natsURLs, ","), "-data-dir", filepath.Join(c.dir, name)}, args...),
		env:  []string{"PULSE_ADMIN_PASSWORD=" + testPassword, "PULSE_API_TOKEN=" + testToken},
	}
}

// resilientTracker speaks the tracker protocol like pulse.js: batches are
// kept until acked, and after a lost connection it reconnects (to the next
// ingest node, as a load balancer would send it) with its session and
// re-sends what was not acked.
type resilientTracker struct {
	nodes   []string
	node    int
	session string
	ws      *websocket.Conn
	// reconnects counts reconnections; slowest is the longest one took.
	reconnects int
	slowest    time.Duration
}

func (r *resilientTracker) connect() error {
	var lastErr error
	for attempt := range 200 {
		u := "ws" + strings.TrimPrefix(r.nodes[r.node%len(r.nodes)], "http") + "/v1/track?v=1&site=demo"
		if r.session != "" {
			u += "&sid=" + r.session
		}
		ws, _, err := websocket.DefaultDialer.Dial(u, nil)
		if err == nil {
			var hello struct{ Type, Session string }
			_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
			if err = ws.ReadJSON(&hello); err == nil {
				r.ws, r.session = ws, hello.Session
				return nil
			}
			ws.Close()
		}
		lastErr = err
		r.node++ // try the other node
		time.Sleep(time.Duration(min(attempt+1, 10)) * 20 * time.Millisecond)
	}
	return fmt.Errorf("no ingest node took the tracker: %w", lastErr)
}

// send sends batch seq of n events until it is acked, reconnecting as
// needed.
func (r *resilientTracker) send(seq uint64, n int) error {
	for {
		if r.ws == nil {
			start := time.Now()
			if err := r.connect(); err != nil {
				return err
			}
			r.reconnects++
			r.slowest = max(r.slowest, time.Since(start))
		}
		if err := sendAcked(r.ws, seq, "move", n); err == nil {
			return nil
		}
		r.ws.Close()
		r.ws = nil
	}
}

// TestClusterFailuresKeepExactCounts runs trackers against two ingest nodes
// on a three-node NATS cluster, with two aggregators sharing the
// partitions, and, under load, kills an ingest node, kills and restarts the
// aggregator of the site's partition, kills a NATS node, and restarts the
// dashboard. Every event acked must be counted exactly once.
func TestClusterFailuresKeepExactCounts(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a NATS cluster and the pulse parts as processes")
	}
	c := startCluster(t)

	// A browser's SSE stream on the dashboard, to see it resume after the
	// dashboard restarts.
	web := login(t, c.dashURL)
	// And one open from the start, through the aggregator's kill and
	// takeover, on a dashboard that is not restarted meanwhile: the new
	// aggregator's panel versions must be newer than the ones this
	// stream has already had, or the dashboard drops its updates and
	// the stream freezes.
	early := openSSE(t, web, c.dashURL+"/sse?site=demo")
	// The versions of the demo panel as the aggregators publish them,
	// across the kill: they must only grow.
	nc, err := nats.Connect(strings.Join(c.natsURLs, ","), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var versions struct {
		sync.Mutex
		last, backwards uint64
	}
	panels, err := nc.Subscribe(event.DashSubject("demo", event.PanelOverview), func(m *nats.Msg) {
		var ov event.Overview
		if json.Unmarshal(m.Data, &ov) != nil {
			return
		}
		versions.Lock()
		defer versions.Unlock()
		if ov.Version <= versions.last && versions.backwards == 0 {
			versions.backwards = ov.Version
		}
		versions.last = max(versions.last, ov.Version)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = panels.Unsubscribe() }()
	earlyEvents := make(chan uint64, 1024)
	go func() {
		defer close(earlyEvents)
		for ev := range readSSE(early.Body) {
			var u struct{ Panel event.Overview }
			if ev.Event == "overview" && json.Unmarshal([]byte(ev.Data), &u) == nil {
				earlyEvents <- u.Panel.Events
			}
		}
	}()

	const (
		trackers  = 20
		batches   = 60
		batchSize = 10
	)
	var sent atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, trackers)
	var slowest atomic.Int64
	var reconnected atomic.Int64
	for i := range trackers {
		wg.Go(func() {
			tr := &resilientTracker{nodes: c.ingestURL, node: i}
			defer func() {
				if tr.ws != nil {
					tr.ws.Close()
				}
			}()
			for seq := uint64(1); seq <= batches; seq++ {
				if err := tr.send(seq, batchSize); err != nil {
					errs <- err
					return
				}
				sent.Add(batchSize)
				time.Sleep(50 * time.Millisecond)
			}
			if tr.reconnects > 1 {
				reconnected.Add(1)
				if tr.slowest > time.Duration(slowest.Load()) {
					slowest.Store(int64(tr.slowest))
				}
			}
		})
	}
	// The failures, a second apart, while the trackers send for about 3 s.
	time.Sleep(700 * time.Millisecond)
	c.ingest[0].kill()
	time.Sleep(500 * time.Millisecond)
	c.agg.kill()
	time.Sleep(300 * time.Millisecond)
	c.agg.start(t)
	time.Sleep(500 * time.Millisecond)
	c.nats[2].kill()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	total := uint64(trackers * batches * batchSize)
	if got := uint64(sent.Load()); got != total {
		t.Fatalf("sent %d, want %d", got, total)
	}
	t.Logf("%d of %d trackers moved to the other ingest node; the slowest took %v", reconnected.Load(), trackers, time.Duration(slowest.Load()))
	if reconnected.Load() == 0 {
		t.Error("no tracker lost its ingest node: the kill did not happen under load")
	}
	if d := time.Duration(slowest.Load()); d > 2*time.Second {
		t.Errorf("a tracker took %v to reconnect, want at most 2 s", d)
	}

	t.Cleanup(func() {
		if t.Failed() {
			c.diagnose(t)
		}
	})
	// The restarted aggregator waits for its killed predecessor's lease
	// to expire (15 s), then counts on from the snapshot.
	var ov event.Overview
	checkFor(t, 60*time.Second, 200*time.Millisecond, func() (err error) {
		if ov, err = stats(c.dashURL, "demo"); err == nil && ov.Events != total {
			err = fmt.Errorf("events %d, want exactly %d", ov.Events, total)
		}
		return err
	})
	versions.Lock()
	if versions.backwards != 0 {
		t.Errorf("after the aggregator's takeover the demo panel went back to version %d, not above the %d dashboards already had", versions.backwards, versions.last)
	}
	versions.Unlock()
	// The stream opened before the kill shows the total too.
	shown := uint64(0)
	for shown != total {
		select {
		case n, ok := <-earlyEvents:
			if !ok {
				t.Fatalf("the stream opened before the aggregator's kill ended, having shown %d events of %d", shown, total)
			}
			shown = n
		case <-time.After(10 * time.Second):
			t.Fatalf("the stream opened before the aggregator's kill froze at %d events of %d", shown, total)
		}
	}
	early.Body.Close()

	// The dashboard restarts; its SSE streams resume on the new one.
	c.dash.stop(t)
	c.dash.start(t)
	waitReadyz(t, c.dashURL, http.StatusOK)
	resp := openSSE(t, web, c.dashURL+"/sse?site=demo")
	defer resp.Body.Close()
	if ov.ByKind["move"] != total {
		t.Errorf("by kind %v", ov.ByKind)
	}
	// Every tracker has gone. The killed node never said so for its
	// trackers; the aggregator ends their presence once the node stops
	// reporting.
	checkFor(t, 90*time.Second, 500*time.Millisecond, func() error {
		ov, err := stats(c.dashURL, "demo")
		if err == nil && ov.Visitors != 0 {
			err = fmt.Errorf("%d visitors still present", ov.Visitors)
		}
		return err
	})
	for ev := range readSSE(resp.Body) {
		if ev.Event == "overview" && strings.Contains(ev.Data, fmt.Sprintf(`"events":%d`, total)) {
			break
		}
	}
}

// openSSE opens an SSE stream with the logged-in client web; the test
// closes its body.
func openSSE(t *testing.T, web *http.Client, url string) *http.Response {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := web.Do(req)
	if err != nil {
		t.Fatalf("sse %s: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		t.Fatalf("sse %s: %s", url, resp.Status)
	}
	return resp
}
