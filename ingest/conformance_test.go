package ingest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/pulse-analytics/pulse/ingest/wsframe"
)

// The RFC 6455 cases of the Autobahn test suite (sections 1 to 7:
// framing, pings and pongs, reserved bits, opcodes, fragmentation, UTF-8,
// close handling), run against a real node on loopback. The node is not
// an echo server: where Autobahn's server echoes a text message, a
// tracker frame is sent instead and the node takes it silently, which the
// check after each case (a ping answered, then a clean close) shows.

// A valid tracker text message, and its two halves for fragments.
const (
	move      = `{"id":"u","x":1,"y":2}`
	moveStart = `{"id":"u",`
	moveEnd   = `"x":1,"y":2}`
)

// padded is a tracker text message of exactly n bytes (JSON allows the
// trailing spaces).
func padded(n int) []byte {
	return append([]byte(move), bytes.Repeat([]byte{' '}, n-len(move))...)
}

func closePayload(code int, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(code)), reason...)
}

type conformanceCase struct {
	id, name string
	frames   [][]byte
	// chunk, if not 0, writes the frames in pieces of that many bytes.
	chunk int
	// pongs are the pongs the node must send, in order; with lastPong
	// only the last must come (RFC 6455 allows answering just the most
	// recent of several pings).
	pongs    []string
	lastPong bool
	// close is the code of the node's close frame; 0 means the
	// connection stays open.
	close int
}

func conformanceCases() []conformanceCase {
	text := func(p []byte) []byte { return clientFrame(fin(wsframe.Text), p) }
	ping := func(p string) []byte { return clientFrame(fin(wsframe.Ping), []byte(p)) }
	pong := func(p string) []byte { return clientFrame(fin(wsframe.Pong), []byte(p)) }
	closing := func(p []byte) []byte { return clientFrame(fin(wsframe.Close), p) }
	first := func(p string) []byte { return clientFrame(byte(wsframe.Text), []byte(p)) }
	cont := func(final bool, p string) []byte {
		b0 := byte(wsframe.Continuation)
		if final {
			b0 |= 0x80
		}
		return clientFrame(b0, []byte(p))
	}
	binaryPing := string([]byte{0x00, 0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0x00, 0xff})
	var tenPings [][]byte
	for i := range 10 {
		tenPings = append(tenPings, ping(fmt.Sprint("ping ", i)))
	}
	cases := []conformanceCase{
		{id: "1.1.2", name: "text of 125 bytes", frames: [][]byte{text(padded(125))}},
		{id: "1.1.3", name: "text of 126 bytes (16-bit length)", frames: [][]byte{text(padded(126))}},
		{id: "1.1.4", name: "text of 127 bytes", frames: [][]byte{text(padded(127))}},
		{id: "1.1.5", name: "text of 128 bytes", frames: [][]byte{text(padded(128))}},
		{id: "1.1.6", name: "text of 65535 bytes", frames: [][]byte{text(padded(65535))}},
		{id: "1.1.7", name: "text of 65536 bytes (64-bit length, the node's limit)", frames: [][]byte{text(padded(65536))}},
		{id: "1.1.8", name: "text of 65536 bytes in pieces of 997", frames: [][]byte{text(padded(65536))}, chunk: 997},
		{id: "9.1.1+", name: "text over the node's limit", frames: [][]byte{text(padded(65537))}, close: 1009},
		{id: "1.2.1", name: "binary: the node takes text only", frames: [][]byte{clientFrame(fin(wsframe.Binary), []byte{1, 2})}, close: 1003},

		{id: "2.1", name: "ping without payload", frames: [][]byte{ping("")}, pongs: []string{""}},
		{id: "2.2", name: "ping with text", frames: [][]byte{ping("Hello, world!")}, pongs: []string{"Hello, world!"}},
		{id: "2.3", name: "ping with binary", frames: [][]byte{ping(binaryPing)}, pongs: []string{binaryPing}},
		{id: "2.4", name: "ping of 125 bytes", frames: [][]byte{ping(strings.Repeat("\xfe", 125))}, pongs: []string{strings.Repeat("\xfe", 125)}},
		{id: "2.5", name: "ping of 126 bytes", frames: [][]byte{ping(strings.Repeat("\xfe", 126))}, close: 1002},
		{id: "2.6", name: "ping of 125 bytes, a byte at a time", frames: [][]byte{ping(strings.Repeat("\xfe", 125))}, chunk: 1, pongs: []string{strings.Repeat("\xfe", 125)}},
		{id: "2.7", name: "unsolicited pong", frames: [][]byte{pong("")}},
		{id: "2.8", name: "unsolicited pong with payload", frames: [][]byte{pong("unsolicited")}},
		{id: "2.9", name: "unsolicited pong, then ping", frames: [][]byte{pong("unsolicited"), ping("pong me")}, pongs: []string{"pong me"}},
		{id: "2.10", name: "ten pings", frames: tenPings, pongs: []string{"ping 9"}, lastPong: true},
		{id: "2.11", name: "ten pings, a byte at a time", frames: tenPings, chunk: 1, pongs: []string{"ping 9"}, lastPong: true},

		{id: "3.1", name: "RSV1 on text", frames: [][]byte{clientFrame(0x80|0x40|byte(wsframe.Text), []byte(move))}, close: 1002},
		{id: "3.2", name: "text, RSV2 on text, ping", frames: [][]byte{text([]byte(move)), clientFrame(0x80|0x20|byte(wsframe.Text), []byte(move)), ping("")}, close: 1002},
		{id: "3.3", name: "RSV1 and RSV2 on text after text", frames: [][]byte{text([]byte(move)), clientFrame(0x80|0x60|byte(wsframe.Text), []byte(move))}, close: 1002},
		{id: "3.4", name: "RSV3 on text, a byte at a time", frames: [][]byte{clientFrame(0x80|0x10|byte(wsframe.Text), []byte(move))}, chunk: 1, close: 1002},
		{id: "3.5", name: "RSV on binary", frames: [][]byte{clientFrame(0x80|0x50|byte(wsframe.Binary), []byte{0xff})}, close: 1002},
		{id: "3.6", name: "RSV on ping", frames: [][]byte{clientFrame(0x80|0x60|byte(wsframe.Ping), nil)}, close: 1002},
		{id: "3.7", name: "RSV on close", frames: [][]byte{clientFrame(0x80|0x70|byte(wsframe.Close), nil)}, close: 1002},

		{id: "4.1.1", name: "opcode 3", frames: [][]byte{clientFrame(0x83, nil)}, close: 1002},
		{id: "4.1.2", name: "opcode 4 with payload", frames: [][]byte{clientFrame(0x84, []byte("reserved"))}, close: 1002},
		{id: "4.1.3", name: "text, opcode 5, ping", frames: [][]byte{text([]byte(move)), clientFrame(0x85, nil), ping("")}, close: 1002},
		{id: "4.1.5", name: "text, opcode 7 with payload, ping", frames: [][]byte{text([]byte(move)), clientFrame(0x87, []byte("reserved")), ping("")}, close: 1002},
		{id: "4.2.1", name: "opcode 11", frames: [][]byte{clientFrame(0x8b, nil)}, close: 1002},
		{id: "4.2.2", name: "opcode 12 with payload", frames: [][]byte{clientFrame(0x8c, []byte("reserved"))}, close: 1002},
		{id: "4.2.5", name: "text, opcode 15, ping", frames: [][]byte{text([]byte(move)), clientFrame(0x8f, []byte("reserved")), ping("")}, close: 1002},

		{id: "5.1", name: "ping in two fragments", frames: [][]byte{clientFrame(byte(wsframe.Ping), []byte("frag")), cont(true, "ment")}, close: 1002},
		{id: "5.2", name: "pong in two fragments", frames: [][]byte{clientFrame(byte(wsframe.Pong), []byte("frag")), cont(true, "ment")}, close: 1002},
		{id: "5.3", name: "text in two fragments", frames: [][]byte{first(moveStart), cont(true, moveEnd)}},
		{id: "5.4", name: "text in two fragments, a byte at a time", frames: [][]byte{first(moveStart), cont(true, moveEnd)}, chunk: 1},
		{id: "5.6", name: "text fragments with a ping between", frames: [][]byte{first(moveStart), ping("between"), cont(true, moveEnd)}, pongs: []string{"between"}},
		{id: "5.8", name: "text fragments with a ping between, a byte at a time", frames: [][]byte{first(moveStart), ping("between"), cont(true, moveEnd)}, chunk: 1, pongs: []string{"between"}},
		{id: "5.9", name: "final continuation without a message", frames: [][]byte{cont(true, moveEnd), text([]byte(move))}, close: 1002},
		{id: "5.12", name: "continuation without a message", frames: [][]byte{cont(false, moveStart), text([]byte(move))}, close: 1002},
		{id: "5.15", name: "a message's fragments, then a continuation", frames: [][]byte{first(moveStart), cont(true, moveEnd), cont(false, moveStart), cont(true, moveEnd)}, close: 1002},
		{id: "5.18", name: "two first fragments", frames: [][]byte{first(moveStart), text([]byte(moveEnd))}, close: 1002},
		{id: "5.19", name: "five fragments with pings between", frames: [][]byte{first(`{"id"`), cont(false, `:"u",`), ping("one"), cont(false, `"x":1,`), ping("two"), cont(true, `"y":2}`)}, pongs: []string{"two"}, lastPong: true},

		{id: "6.2.1", name: "UTF-8 in one frame", frames: [][]byte{text([]byte(`{"id":"Hello-µ@ßöäüàá-UTF-8!!","x":1,"y":2}`))}},
		{id: "6.2.3", name: "UTF-8 split inside a character, a byte at a time", frames: [][]byte{text([]byte(`{"id":"κόσμε","x":1,"y":2}`))}, chunk: 1},
		{id: "6.2.4", name: "UTF-8 fragments split inside a character", frames: [][]byte{first("{\"id\":\"\xce"), cont(false, "\xba\xe1"), cont(true, "\xbd\xb9\",\"x\":1,\"y\":2}")}},
		{id: "6.3.1", name: "not UTF-8", frames: [][]byte{text([]byte("{\"id\":\"\xce\xba\xe1\xbd\xb9\xce\xbc\xce\xb5\xed\xa0\x80\",\"x\":1,\"y\":2}"))}, close: 1007},
		{id: "6.3.2", name: "not UTF-8, in fragments", frames: [][]byte{first("{\"id\":\"\xce\xba"), cont(true, "\xed\xa0\x80\",\"x\":1,\"y\":2}")}, close: 1007},
		{id: "6.4.1", name: "a frame ending mid-character", frames: [][]byte{first("{\"id\":\"\xce\xba\xe1\xbd\xb9\xce\xbc\xce\xb5\xf4\x90\x80\x80"), cont(true, "\",\"x\":1,\"y\":2}")}, close: 1007},
		{id: "6.8.1", name: "an overlong encoding", frames: [][]byte{text([]byte("{\"id\":\"\xc0\xaf\",\"x\":1,\"y\":2}"))}, close: 1007},
		{id: "6.20.1", name: "a lone surrogate", frames: [][]byte{text([]byte("{\"id\":\"\xed\xa0\x80\",\"x\":1,\"y\":2}"))}, close: 1007},
		{id: "6.6+", name: "a code point above U+10FFFF", frames: [][]byte{text([]byte("{\"id\":\"\xf4\x90\x80\x80\",\"x\":1,\"y\":2}"))}, close: 1007},

		{id: "7.1.1", name: "text, then close", frames: [][]byte{text([]byte(move)), closing(closePayload(1000, ""))}, close: 1000},
		{id: "7.1.2", name: "close twice", frames: [][]byte{closing(closePayload(1000, "")), closing(closePayload(1000, ""))}, close: 1000},
		{id: "7.1.3", name: "close, then ping", frames: [][]byte{closing(closePayload(1000, "")), ping("after close")}, close: 1000},
		{id: "7.1.4", name: "close, then text", frames: [][]byte{closing(closePayload(1000, "")), text([]byte(move))}, close: 1000},
		{id: "7.1.5", name: "a fragment, close, the last fragment", frames: [][]byte{first(moveStart), closing(closePayload(1000, "")), cont(true, moveEnd)}, close: 1000},
		{id: "7.3.1", name: "close without payload", frames: [][]byte{closing(nil)}, close: 1000},
		{id: "7.3.2", name: "close of one byte", frames: [][]byte{closing([]byte{0x03})}, close: 1002},
		{id: "7.3.4", name: "close 1000 with a reason", frames: [][]byte{closing(closePayload(1000, "Hello World!"))}, close: 1000},
		{id: "7.3.5", name: "close with a reason of 123 bytes", frames: [][]byte{closing(closePayload(1000, strings.Repeat("*", 123)))}, close: 1000},
		{id: "7.3.6", name: "close with a reason of 124 bytes", frames: [][]byte{closing(closePayload(1000, strings.Repeat("*", 124)))}, close: 1002},
		{id: "7.5.1", name: "close reason not UTF-8", frames: [][]byte{closing(closePayload(1000, "\xce\xba\xe1\xbd\xb9\xce\xbc\xce\xb5\xed\xa0\x80"))}, close: 1007},
	}
	for _, code := range []int{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999} {
		cases = append(cases, conformanceCase{id: "7.7", name: fmt.Sprint("close ", code, " is echoed"), frames: [][]byte{closing(closePayload(code, ""))}, close: code})
	}
	for _, code := range []int{0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535} {
		cases = append(cases, conformanceCase{id: "7.9", name: fmt.Sprint("close ", code, " may not be sent"), frames: [][]byte{closing(closePayload(code, ""))}, close: 1002})
	}
	return cases
}

func TestRFC6455Conformance(t *testing.T) {
	n := startNode(t, func(c *Config) { c.MaxConnEventsPerSecond = 10_000 })
	for _, tc := range conformanceCases() {
		t.Run(tc.id+" "+tc.name, func(t *testing.T) {
			t.Parallel()
			c := dialRaw(t, n.url, "/v1/track", rawOptions{})
			write(t, c, bytes.Join(tc.frames, nil), tc.chunk)
			var got []serverFrame
			var closeFrame *serverFrame
			if tc.close != 0 {
				frames, f := c.readUntilClose(t, 5*time.Second)
				got, closeFrame = frames, &f
			} else {
				// The pongs the case expects, then one more for a
				// ping that shows the connection still open.
				for len(got) < len(tc.pongs) || tc.lastPong && string(got[len(got)-1].payload) != tc.pongs[0] {
					got = append(got, readOpen(t, c, got))
				}
				write(t, c, clientFrame(fin(wsframe.Ping), []byte("alive?")), 0)
				if f := readOpen(t, c, got); f.op != wsframe.Pong || string(f.payload) != "alive?" {
					t.Fatalf("after %s: %d %q, want the pong of a last ping", describe(got), f.op, f.payload)
				}
			}
			checkPongs(t, got, tc)
			if closeFrame == nil {
				write(t, c, clientFrame(fin(wsframe.Close), closePayload(1000, "")), 0)
				_, f := c.readUntilClose(t, 5*time.Second)
				closeFrame = &f
				tc.close = 1000
			}
			if closeFrame.closeCode() != tc.close {
				t.Fatalf("close %d %q, want %d", closeFrame.closeCode(), closeFrame.payload, tc.close)
			}
			// After its close frame the node closes the connection.
			if f, err := c.readFrame(5 * time.Second); !errors.Is(err, io.EOF) {
				t.Fatalf("after the close frame: %v %v, want the end of the stream", f.op, err)
			}
		})
	}
}

// readOpen reads a frame that must come on an open connection.
func readOpen(t *testing.T, c *rawClient, before []serverFrame) serverFrame {
	t.Helper()
	f, err := c.readFrame(5 * time.Second)
	if err != nil {
		t.Fatalf("after %s: %v; want the connection open", describe(before), err)
	}
	return f
}

// write writes b in pieces of chunk bytes (all at once if chunk is 0).
func write(t *testing.T, c *rawClient, b []byte, chunk int) {
	t.Helper()
	if chunk == 0 {
		chunk = len(b)
	}
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	for len(b) > 0 {
		n := min(chunk, len(b))
		if _, err := c.Write(b[:n]); err != nil {
			t.Fatal(err)
		}
		b = b[n:]
	}
}

func checkPongs(t *testing.T, got []serverFrame, tc conformanceCase) {
	t.Helper()
	var pongs []string
	for _, f := range got {
		if f.op != wsframe.Pong {
			t.Fatalf("got %s, want only pongs", describe(got))
		}
		pongs = append(pongs, string(f.payload))
	}
	if tc.lastPong {
		if len(pongs) == 0 || pongs[len(pongs)-1] != tc.pongs[0] {
			t.Fatalf("pongs %q, want them to end with %q", pongs, tc.pongs[0])
		}
		return
	}
	if fmt.Sprint(pongs) != fmt.Sprint(tc.pongs) {
		t.Fatalf("pongs %q, want %q", pongs, tc.pongs)
	}
}
