package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pulse-analytics/pulse/natsutil/natstest"
)

// The frame decoders' cost per frame and per event, with the fast path
// and with encoding/json alone (what every frame cost before):
// `go test -run '^$' -bench Decode -benchmem ./ingest`.

var classicFrameSample = []byte(`{"id":"user123","x":640,"y":360,"ts":1763790000000000000}`)

func BenchmarkDecodeClassic(b *testing.B) {
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, _, err := decodeClassic(classicFrameSample, "user123"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var ft frameType
			var f classicFrame
			if json.Unmarshal(classicFrameSample, &ft) != nil || json.Unmarshal(classicFrameSample, &f) != nil {
				b.Fatal("decode")
			}
		}
	})
}

// batchFrameSample is a tracker batch of 20 events, as pulse.js sends
// after a second of mouse moves with a click.
func batchFrameSample() []byte {
	var events []string
	for i := range 20 {
		kind := "move"
		if i == 10 {
			kind = "click"
		}
		events = append(events, fmt.Sprintf(`{"k":%q,"a":%d,"x":%d,"y":%d,"vw":1280,"vh":800,"p":"/pricing"}`, kind, 1000-i*50, 100+i*7, 200+i*3))
	}
	return []byte(`{"type":"batch","seq":42,"events":[` + strings.Join(events, ",") + `]}`)
}

func BenchmarkDecodeBatch(b *testing.B) {
	data := batchFrameSample()
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		var f batchFrame // scratch, as the node's pool keeps it
		for b.Loop() {
			if _, _, err := decodeBatch(data, &f, 1_763_790_000_000, 200); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*20), "ns/event")
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var f batchFrame
			if err := json.Unmarshal(data, &f); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*20), "ns/event")
	})
}

// benchNode is a node storing in a real embedded NATS server, without
// limits that the benchmarks would reach.
func benchNode(b *testing.B) *Server {
	ns := natstest.Run(b)
	s, err := New(Config{
		Publisher: ns.JS, Logger: slog.New(slog.DiscardHandler), Sites: staticSites{"demo": {Key: "demo"}},
		MaxConnEventsPerSecond: 1 << 30, MaxBuffered: 1 << 30,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	return s
}

// BenchmarkConnClassic is a classic frame as the poller hands it to its
// connection: the WebSocket frame, the JSON, the rate limit and the
// batcher, against a real embedded NATS server that stores what the
// batcher publishes.
func BenchmarkConnClassic(b *testing.B) {
	s := benchNode(b)
	c := newConn(s, nil, "127.0.0.1", "demo", "s1", "", false)
	c.proto.joined, c.proto.visitor = true, "user123"
	// A client's frame masked with a zero key, which unmasking leaves as
	// it is, so the same bytes can be fed again.
	frame := append([]byte{0x81, 0x80 | byte(len(classicFrameSample)), 0, 0, 0, 0}, classicFrameSample...)
	b.ReportAllocs()
	for b.Loop() {
		c.Data(frame)
	}
	if c.proto.ended {
		b.Fatal("the connection failed")
	}
}

// BenchmarkConnBatch is BenchmarkConnClassic for tracker batches of 20
// events, each with the next seq: the protocol's checks, the batcher
// storing them in JetStream and the acks, written to a socket that
// discards them.
func BenchmarkConnBatch(b *testing.B) {
	s := benchNode(b)
	c := newConn(s, discardConn{}, "127.0.0.1", "demo", "s1", "user123", true)
	c.proto.joined = true
	sample := batchFrameSample()
	rest := sample[bytes.Index(sample, []byte(`,"events"`)):]
	var frame []byte
	seq := 0
	b.ReportAllocs()
	for b.Loop() {
		seq++
		payload := append(strconv.AppendInt([]byte(`{"type":"batch","seq":`), int64(seq), 10), rest...)
		// Masked with a zero key, as in BenchmarkConnClassic.
		frame = append(frame[:0], 0x81, 0x80|126, byte(len(payload)>>8), byte(len(payload)), 0, 0, 0, 0)
		frame = append(frame, payload...)
		c.Data(frame)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*20), "ns/event")
	if c.proto.ended {
		b.Fatal("the connection failed")
	}
}

// discardConn is a socket that takes every write.
type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error)      { return len(p), nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }
func (discardConn) Close() error                     { return nil }
