package ingest

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pulse-analytics/pulse/ingest/wsframe"
)

// rawClient is a WebSocket client that writes exactly the bytes it is
// given, as an attacker or a conformance suite does: after the handshake
// nothing is read or answered unless the test asks.
type rawClient struct {
	net.Conn
	br *bufio.Reader
}

// rawOptions shape a rawClient's socket.
type rawOptions struct {
	// from is the local address to dial from, in 127.0.0.0/8; default
	// 127.0.0.1.
	from string
	// readBuffer, if set, is the socket's receive buffer, set before the
	// connection is made so that the window it offers stays small.
	readBuffer int
}

// dialRaw does the handshake for path (e.g. "/v1/track?v=1") on the node
// at wsURL and returns the client, the response read.
func dialRaw(t testing.TB, wsURL, path string, opts rawOptions) *rawClient {
	t.Helper()
	c, err := tryDialRaw(wsURL, path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func tryDialRaw(wsURL, path string, opts rawOptions) (*rawClient, error) {
	u, err := url.Parse(wsURL)
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	if opts.from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(opts.from)}
	}
	if opts.readBuffer > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, opts.readBuffer)
			})
			return errors.Join(err, serr)
		}
	}
	nc, err := d.DialContext(context.Background(), "tcp", u.Host)
	if err != nil {
		return nil, err
	}
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	req := "GET " + path + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		nc.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(nc, 256)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		nc.Close()
		return nil, fmt.Errorf("handshake: %s", resp.Status)
	}
	_ = nc.SetDeadline(time.Time{})
	return &rawClient{Conn: nc, br: br}, nil
}

// clientFrame encodes one masked client frame with the given first byte
// (FIN, reserved bits and opcode) and payload.
func clientFrame(b0 byte, payload []byte) []byte {
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
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	out = append(out, key[:]...)
	for i, b := range payload {
		out = append(out, b^key[i&3])
	}
	return out
}

// fin returns the first byte of a final frame of op.
func fin(op wsframe.Opcode) byte { return 0x80 | byte(op) }

// serverFrame is a frame the server sent.
type serverFrame struct {
	op      wsframe.Opcode
	payload []byte
}

// closeCode is the status code of a close frame, wsframe.NoStatus if it
// has none.
func (f serverFrame) closeCode() int {
	if len(f.payload) < 2 {
		return wsframe.NoStatus
	}
	return int(binary.BigEndian.Uint16(f.payload))
}

// readFrame reads one frame from the server within wait.
func (c *rawClient) readFrame(wait time.Duration) (serverFrame, error) {
	_ = c.SetReadDeadline(time.Now().Add(wait))
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return serverFrame{}, err
	}
	if h[0]&0x80 == 0 || h[0]&0x70 != 0 || h[1]&0x80 != 0 {
		return serverFrame{}, fmt.Errorf("server frame with header %#x %#x: want final, no reserved bits, unmasked", h[0], h[1])
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		if _, err := io.ReadFull(c.br, l[:]); err != nil {
			return serverFrame{}, err
		}
		n = uint64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		if _, err := io.ReadFull(c.br, l[:]); err != nil {
			return serverFrame{}, err
		}
		n = binary.BigEndian.Uint64(l[:])
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(c.br, payload); err != nil {
		return serverFrame{}, err
	}
	return serverFrame{wsframe.Opcode(h[0] & 0x0f), payload}, nil
}

// readUntilClose reads frames until the server's close frame and returns
// the frames before it and the close frame; it fails the test if the
// connection ends without one or nothing comes within wait.
func (c *rawClient) readUntilClose(t testing.TB, wait time.Duration) ([]serverFrame, serverFrame) {
	t.Helper()
	var got []serverFrame
	for {
		f, err := c.readFrame(wait)
		if err != nil {
			t.Fatalf("after %s: %v; want a close frame", describe(got), err)
		}
		if f.op == wsframe.Close {
			return got, f
		}
		got = append(got, f)
	}
}

func describe(frames []serverFrame) string {
	var parts []string
	for _, f := range frames {
		parts = append(parts, fmt.Sprintf("%d:%.40q", f.op, f.payload))
	}
	return "[" + strings.Join(parts, " ") + "]"
}
