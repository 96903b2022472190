package follow

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// recorder keeps the stream sequences handled, in order.
type recorder struct {
	mu   sync.Mutex
	seqs []uint64
}

func (r *recorder) handle(msg jetstream.Msg) {
	meta, _ := msg.Metadata()
	r.mu.Lock()
	r.seqs = append(r.seqs, meta.Sequence.Stream)
	r.mu.Unlock()
}

func (r *recorder) handled() []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seqs)
}

// waitFor waits until r has handled exactly want, in order.
func (r *recorder) waitFor(t *testing.T, want []uint64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := r.handled()
		if slices.Equal(got, want) {
			return
		}
		if len(got) > len(want) || !slices.Equal(got, want[:len(got)]) || time.Now().After(deadline) {
			t.Fatalf("handled %v,\nwant %v", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// seqs returns from..to.
func seqs(from, to uint64) []uint64 {
	var s []uint64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
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

// runServer starts opts' server and waits until it takes clients.
func runServer(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		t.Fatalf("%s not ready", opts.ServerName)
	}
	return ns
}

func connect(t *testing.T, urls string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(urls, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// publisher publishes numbered messages.
type publisher struct {
	js jetstream.JetStream
	n  int // messages published
}

// publish publishes n messages to subject, retrying each until it is
// stored; the message id makes a retry of one that was stored harmless.
func (p *publisher) publish(t *testing.T, subject string, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; i < n; {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := p.js.Publish(ctx, subject, []byte("m"), jetstream.WithMsgID(strconv.Itoa(p.n+1)))
		cancel()
		if err == nil {
			i++
			p.n++
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("publish: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func createStream(t *testing.T, js jetstream.JetStream, replicas int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Replicas: replicas})
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("create stream: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestFollowFromSequenceWithFilter(t *testing.T) {
	dir := t.TempDir()
	ns := runServer(t, &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	t.Cleanup(ns.Shutdown)
	js := connect(t, ns.ClientURL())
	createStream(t, js, 1)
	p := &publisher{js: js}
	// 1–6 on t.a, 7–9 on t.b, 10–12 on t.a
	p.publish(t, "t.a", 6)
	p.publish(t, "t.b", 3)
	p.publish(t, "t.a", 3)

	var r recorder
	f, err := Start(context.Background(), js, Options{Stream: "T", Filter: []string{"t.a"}, After: 4}, r.handle)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop(time.Second)
	r.waitFor(t, []uint64{5, 6, 10, 11, 12}, 10*time.Second)
	p.publish(t, "t.a", 1)
	r.waitFor(t, []uint64{5, 6, 10, 11, 12, 13}, 10*time.Second)
}

func TestFollowSince(t *testing.T) {
	ns := runServer(t, &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	t.Cleanup(ns.Shutdown)
	js := connect(t, ns.ClientURL())
	createStream(t, js, 1)
	p := &publisher{js: js}
	p.publish(t, "t.a", 3)
	time.Sleep(20 * time.Millisecond)
	since := time.Now()
	time.Sleep(20 * time.Millisecond)
	p.publish(t, "t.a", 2)

	var r recorder
	f, err := Start(context.Background(), js, Options{Stream: "T", Since: since}, r.handle)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop(time.Second)
	r.waitFor(t, []uint64{4, 5}, 10*time.Second)
	p.publish(t, "t.a", 1)
	r.waitFor(t, []uint64{4, 5, 6}, 10*time.Second)
}

func TestFollowAfterItsConsumerIsDeleted(t *testing.T) {
	ns := runServer(t, &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	t.Cleanup(ns.Shutdown)
	js := connect(t, ns.ClientURL())
	createStream(t, js, 1)
	p := &publisher{js: js}
	p.publish(t, "t.a", 5)
	var r recorder
	var renewals atomic.Int64
	f, err := Start(context.Background(), js, Options{Stream: "T", Renewed: func() { renewals.Add(1) }}, r.handle)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Stop(time.Second)
	r.waitFor(t, seqs(1, 5), 10*time.Second)
	if n := renewals.Load(); n != 0 {
		t.Errorf("%d renewals before the consumer was deleted", n)
	}

	f.mu.Lock()
	name := f.name
	f.mu.Unlock()
	if err := js.DeleteConsumer(context.Background(), "T", name); err != nil {
		t.Fatal(err)
	}
	p.publish(t, "t.a", 5)
	r.waitFor(t, seqs(1, 10), 10*time.Second)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.name == name {
		t.Errorf("still on consumer %s", name)
	}
	if n := renewals.Load(); n < 1 {
		t.Errorf("Renewed called %d times, want at least once", n)
	}
}

// fakeMsg is a message with only its sequences.
type fakeMsg struct {
	jetstream.Msg
	consumer, stream uint64
}

func (m fakeMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{Sequence: jetstream.SequencePair{Consumer: m.consumer, Stream: m.stream}}, nil
}

// TestGapStartsANewConsumer: a message missing between the server and the
// client (consumer sequence 3 skipped) is not papered over: the rest of
// that consumer's messages are ignored and a new one starts after the last
// message handled.
func TestGapStartsANewConsumer(t *testing.T) {
	var r recorder
	f := &Follower{handle: r.handle, renew: make(chan struct{}, 1), next: 1, log: testLogger(t)}
	h := f.handler(0)
	h(fakeMsg{consumer: 1, stream: 10})
	h(fakeMsg{consumer: 2, stream: 12})
	h(fakeMsg{consumer: 4, stream: 15}) // 3 is missing
	h(fakeMsg{consumer: 5, stream: 16})
	if got := r.handled(); !slices.Equal(got, []uint64{10, 12}) {
		t.Errorf("handled %v, want [10 12]", got)
	}
	select {
	case <-f.renew:
	default:
		t.Fatal("no new consumer asked for")
	}
	if f.gen != 1 || f.next != 1 || f.last != 12 {
		t.Errorf("gen %d, next %d, last %d; want 1, 1, 12", f.gen, f.next, f.last)
	}
}

// host returns the server of f's current consumer.
func (f *Follower) host(t *testing.T) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		f.mu.Lock()
		name := f.name
		f.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		cons, err := f.js.Consumer(ctx, f.opts.Stream, name)
		cancel()
		if err == nil && name != "" {
			return cons.CachedInfo().Cluster.Leader
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer %q: %v", name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// testLogger logs to t.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
