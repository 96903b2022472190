package wsframe

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// frame encodes one client frame, masked with key.
func frame(fin bool, op Opcode, payload []byte, key [4]byte) []byte {
	b0 := byte(op)
	if fin {
		b0 |= 0x80
	}
	out := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		out = append(out, 0x80|byte(n))
	case n < 1<<16:
		out = append(out, 0x80|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out = append(out, 0x80|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	out = append(out, key[:]...)
	for i, c := range payload {
		out = append(out, c^key[i&3])
	}
	return out
}

type message struct {
	op      Opcode
	payload string
}

// feedAll feeds data in chunks of size (all at once if size <= 0) and
// returns the messages and the first error.
func feedAll(r *Reader, data []byte, size int) ([]message, error) {
	var got []message
	fn := func(op Opcode, p []byte) error {
		got = append(got, message{op, string(p)})
		return nil
	}
	data = bytes.Clone(data) // Feed unmasks in place
	if size <= 0 {
		size = len(data) + 1
	}
	for len(data) > 0 {
		n := min(size, len(data))
		if err := r.Feed(data[:n], fn); err != nil {
			return got, err
		}
		data = data[n:]
	}
	return got, nil
}

var key = [4]byte{0x12, 0x34, 0x56, 0x78}

func TestReaderMessages(t *testing.T) {
	long := strings.Repeat("0123456789", 7000) // 70,000 bytes: 64-bit length
	mid := strings.Repeat("x", 300)            // 16-bit length
	var stream []byte
	stream = append(stream, frame(true, Text, []byte(`{"id":"u1","x":1,"y":2}`), key)...)
	stream = append(stream, frame(true, Ping, []byte("hi"), key)...)
	stream = append(stream, frame(false, Text, []byte("frag-"), key)...)
	stream = append(stream, frame(true, Pong, nil, key)...) // control frame between fragments
	stream = append(stream, frame(false, Continuation, []byte(mid), key)...)
	stream = append(stream, frame(true, Continuation, []byte("-end"), key)...)
	stream = append(stream, frame(true, Binary, []byte(long), key)...)
	stream = append(stream, frame(true, Text, nil, key)...)
	stream = append(stream, frame(true, Close, []byte{0x03, 0xE8, 'b', 'y', 'e'}, key)...)
	want := []message{
		{Text, `{"id":"u1","x":1,"y":2}`},
		{Ping, "hi"},
		{Pong, ""},
		{Text, "frag-" + mid + "-end"},
		{Binary, long},
		{Text, ""},
		{Close, "\x03\xe8bye"},
	}
	for _, size := range []int{0, 1, 2, 3, 7, 100, 4096} {
		r := NewReader(100_000)
		got, err := feedAll(r, stream, size)
		if err != nil {
			t.Fatalf("chunks of %d: %v", size, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("chunks of %d: got %d messages %.200v, want %.200v", size, len(got), got, want)
		}
		if r.Pending() != 0 {
			t.Errorf("chunks of %d: %d bytes pending after whole frames", size, r.Pending())
		}
	}
}

func TestReaderErrors(t *testing.T) {
	unmasked := frame(true, Text, []byte("x"), key)
	unmasked[1] &^= 0x80
	rsv := frame(true, Text, []byte("x"), key)
	rsv[0] |= 0x40
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"message over the limit", frame(true, Text, make([]byte, 101), key), ErrTooLarge},
		{"fragments over the limit", append(frame(false, Text, make([]byte, 60), key), frame(true, Continuation, make([]byte, 60), key)...), ErrTooLarge},
		{"unmasked", unmasked, ErrProtocol},
		{"reserved bits", rsv, ErrProtocol},
		{"unknown opcode", frame(true, Opcode(3), nil, key), ErrProtocol},
		{"fragmented control", frame(false, Ping, nil, key), ErrProtocol},
		{"long control", frame(true, Ping, make([]byte, 126), key), ErrProtocol},
		{"continuation alone", frame(true, Continuation, []byte("x"), key), ErrProtocol},
		{"message inside a message", append(frame(false, Text, []byte("a"), key), frame(true, Text, []byte("b"), key)...), ErrProtocol},
		{"64-bit length top bit", []byte{0x81, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0}, ErrProtocol},
		{"text not UTF-8", frame(true, Text, []byte("caf\xe9"), key), ErrInvalidUTF8},
		{"fragments not UTF-8", append(frame(false, Text, []byte("\xce"), key), frame(true, Continuation, []byte("\xff"), key)...), ErrInvalidUTF8},
		{"close of one byte", frame(true, Close, []byte{3}, key), ErrProtocol},
		{"close code 1005", frame(true, Close, []byte{0x03, 0xed}, key), ErrProtocol},
		{"close reason not UTF-8", frame(true, Close, []byte("\x03\xe8\xff"), key), ErrInvalidUTF8},
	} {
		_, err := feedAll(NewReader(100), tc.data, 0)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	// The limit is checked from the header, before the payload arrives.
	r := NewReader(100)
	if err := r.Feed(frame(true, Text, make([]byte, 1<<20), key)[:10], func(Opcode, []byte) error { return nil }); !errors.Is(err, ErrTooLarge) {
		t.Errorf("header of a 1 MiB frame: got %v, want ErrTooLarge", err)
	}
	// An error from fn stops Feed.
	stop := errors.New("stop")
	two := append(frame(true, Text, []byte("a"), key), frame(true, Text, []byte("b"), key)...)
	calls := 0
	if err := NewReader(100).Feed(two, func(Opcode, []byte) error { calls++; return stop }); err != stop || calls != 1 {
		t.Errorf("fn error: got %v after %d calls", err, calls)
	}
}

// TestReaderAcceptsUTF8InPieces: a character split between fragments is
// valid, and binary messages are not checked.
func TestReaderAcceptsUTF8InPieces(t *testing.T) {
	stream := append(frame(false, Text, []byte("\xce"), key), frame(true, Continuation, []byte("\xba\xe1\xbd\xb9"), key)...)
	stream = append(stream, frame(true, Binary, []byte{0xff, 0xfe}, key)...)
	got, err := feedAll(NewReader(100), stream, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := []message{{Text, "\xce\xba\xe1\xbd\xb9"}, {Binary, "\xff\xfe"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestParseClose(t *testing.T) {
	for _, tc := range []struct {
		payload string
		code    int
		reason  string
		err     error
	}{
		{"", NoStatus, "", nil},
		{"\x03", 0, "", ErrProtocol},
		{"\x03\xe8", 1000, "", nil},
		{"\x03\xe9bye", 1001, "bye", nil},
		{"\x03\xf3", 1011, "", nil},
		{"\x03\xf6", 1014, "", nil},
		{"\x0b\xb8", 3000, "", nil},
		{"\x13\x87", 4999, "", nil},
		{"\x00\x00", 0, "", ErrProtocol},
		{"\x03\xe7", 0, "", ErrProtocol},                // 999
		{"\x03\xec", 0, "", ErrProtocol},                // 1004
		{"\x03\xee", 0, "", ErrProtocol},                // 1006
		{"\x03\xf7", 0, "", ErrProtocol},                // 1015
		{"\x07\xd0", 0, "", ErrProtocol},                // 2000
		{"\x13\x88", 0, "", ErrProtocol},                // 5000
		{"\xff\xff", 0, "", ErrProtocol},                // 65535
		{"\x03\xe8\xed\xa0\x80", 0, "", ErrInvalidUTF8}, // a surrogate
	} {
		code, reason, err := ParseClose([]byte(tc.payload))
		if code != tc.code || reason != tc.reason || !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
			t.Errorf("ParseClose(%q) = %d, %q, %v; want %d, %q, %v", tc.payload, code, reason, err, tc.code, tc.reason, tc.err)
		}
	}
}

// TestReaderReadsGorilla: what a gorilla/websocket client writes, masked
// and fragmented as it does, reads back message for message.
func TestReaderReadsGorilla(t *testing.T) {
	raw := make(chan []byte, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		_ = ws.NetConn().SetReadDeadline(time.Now().Add(10 * time.Second))
		data, _ := io.ReadAll(ws.NetConn())
		raw <- data
	}))
	defer srv.Close()
	d := websocket.Dialer{WriteBufferSize: 512} // messages over 512 bytes go in fragments
	c, _, err := d.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	var want []message
	for i := range 50 {
		p := strings.Repeat(fmt.Sprintf("m%d,", i), i*i)
		if err := c.WriteMessage(websocket.TextMessage, []byte(p)); err != nil {
			t.Fatal(err)
		}
		want = append(want, message{Text, p})
	}
	_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	want = append(want, message{Close, "\x03\xe8"})
	c.NetConn().Close()
	data := <-raw
	for _, size := range []int{0, 5, 1000} {
		got, err := feedAll(NewReader(1<<20), data, size)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("chunks of %d: got %d messages, want %d", size, len(got), len(want))
		}
	}
}

// FuzzReader: no input panics or yields a message over the limit, and
// feeding in pieces yields what feeding at once does.
func FuzzReader(f *testing.F) {
	f.Add(frame(true, Text, []byte(`{"id":"u"}`), key), 3)
	f.Add(append(frame(false, Text, []byte("ab"), key), frame(true, Continuation, []byte("cd"), key)...), 1)
	f.Add(frame(true, Ping, []byte("p"), key), 2)
	f.Fuzz(func(t *testing.T, data []byte, size int) {
		const limit = 1000
		whole, errWhole := feedAll(NewReader(limit), data, 0)
		pieces, errPieces := feedAll(NewReader(limit), data, 1+abs(size)%64)
		if fmt.Sprint(whole) != fmt.Sprint(pieces) || (errWhole == nil) != (errPieces == nil) {
			t.Fatalf("at once: %v, %v; in pieces: %v, %v", whole, errWhole, pieces, errPieces)
		}
		for _, m := range whole {
			if len(m.payload) > limit {
				t.Fatalf("message of %d bytes over the limit", len(m.payload))
			}
		}
	})
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// TestAppendFrameReadsInGorilla: frames written with AppendFrame are what a
// gorilla client reads, at every length encoding.
func TestAppendFrameReadsInGorilla(t *testing.T) {
	payloads := []string{"", "hello", strings.Repeat("m", 200), strings.Repeat("l", 70_000)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		var out []byte
		for _, p := range payloads {
			out = AppendFrame(out, Text, []byte(p))
		}
		out = AppendFrame(out, Close, []byte{0x03, 0xF0, 'b', 'y', 'e'})
		_, _ = ws.NetConn().Write(out)
		time.Sleep(100 * time.Millisecond)
	}))
	defer srv.Close()
	c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, want := range payloads {
		mt, got, err := c.ReadMessage()
		if err != nil || mt != websocket.TextMessage || string(got) != want {
			t.Fatalf("read %d %d bytes, %v; want a text message of %d bytes", mt, len(got), err, len(want))
		}
	}
	_, _, err = c.ReadMessage()
	if !websocket.IsCloseError(err, 1008) || !strings.Contains(err.Error(), "bye") {
		t.Errorf("close: %v, want 1008 bye", err)
	}
}

// BenchmarkFeed reads 64 KiB of small masked frames, as a poller does:
// `go test -run '^$' -bench Feed -benchmem ./ingest/wsframe`.
func BenchmarkFeed(b *testing.B) {
	msg := frame(true, Text, []byte(`{"id":"user123","x":640,"y":360}`), key)
	var stream []byte
	for len(stream)+len(msg) <= 64<<10 {
		stream = append(stream, msg...)
	}
	frames := len(stream) / len(msg)
	buf := make([]byte, len(stream))
	r := NewReader(64 << 10)
	b.ReportAllocs()
	b.SetBytes(int64(len(stream)))
	for b.Loop() {
		copy(buf, stream)
		if err := r.Feed(buf, func(Opcode, []byte) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*frames), "ns/frame")
}
