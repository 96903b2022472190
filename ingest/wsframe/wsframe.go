// Package wsframe reads the WebSocket frames (RFC 6455) a server receives,
// incrementally, from whatever bytes have arrived, and writes the frames a
// server sends. It keeps no buffer of its own while a connection is between
// frames, so an idle connection costs nothing here: this is what lets a
// server read a socket only when it is readable, with one buffer per poller
// instead of one per connection. The handshake stays with gorilla/websocket.
package wsframe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Opcode is a frame's or message's type.
type Opcode byte

// Opcodes of RFC 6455, section 5.2.
const (
	Continuation Opcode = 0x0
	Text         Opcode = 0x1
	Binary       Opcode = 0x2
	Close        Opcode = 0x8
	Ping         Opcode = 0x9
	Pong         Opcode = 0xA
)

// ErrTooLarge is returned for a message over the reader's limit; the
// connection should be closed with 1009 (message too big).
var ErrTooLarge = errors.New("message too large")

// ErrProtocol marks a frame that breaks RFC 6455; the connection should be
// closed with 1002 (protocol error).
var ErrProtocol = errors.New("websocket protocol error")

// ErrInvalidUTF8 marks a text message or close reason that is not UTF-8;
// the connection should be closed with 1007 (invalid frame payload data).
var ErrInvalidUTF8 = errors.New("text is not valid UTF-8")

func protocolErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, args...))
}

// maxControlPayload is the largest payload of a control frame.
const maxControlPayload = 125

// Reader turns the bytes a client sent into messages. The zero Reader is
// not usable; make one with NewReader. A Reader is not safe for concurrent
// use.
type Reader struct {
	limit int
	// pending holds the start of a frame whose rest has not arrived.
	pending []byte
	// message holds the fragments of a message whose last has not
	// arrived, and messageOp its opcode.
	message   []byte
	messageOp Opcode
	inMessage bool
}

// NewReader returns a Reader that refuses messages over limit bytes.
func NewReader(limit int) *Reader { return &Reader{limit: limit} }

// Pending reports how many bytes the reader holds for frames and messages
// not yet complete.
func (r *Reader) Pending() int { return len(r.pending) + len(r.message) }

// Feed reads the frames in data, which follows the bytes fed before, and
// calls fn with each complete data message (text or binary, fragments
// joined) and each control frame, in order. A text message that is not
// UTF-8 is an error (ErrInvalidUTF8), as is a close frame that ParseClose
// refuses, so fn sees only valid ones. It unmasks data in place. The
// payload passed to fn is only valid during the call. Feed stops at the
// first error, from the stream or from fn; after one, the connection must
// be closed.
func (r *Reader) Feed(data []byte, fn func(op Opcode, payload []byte) error) error {
	buf := data
	if len(r.pending) > 0 {
		r.pending = append(r.pending, data...)
		buf = r.pending
	}
	for len(buf) > 0 {
		n, err := r.frame(buf, fn)
		if err != nil {
			return err
		}
		if n == 0 {
			break // incomplete: wait for more
		}
		buf = buf[n:]
	}
	r.keep(buf)
	return nil
}

// keep stores rest, the start of an incomplete frame, for the next Feed:
// the caller's buffer is reused once Feed returns.
func (r *Reader) keep(rest []byte) {
	if len(rest) == 0 {
		if cap(r.pending) > 4096 {
			r.pending = nil // do not keep a large frame's buffer while idle
		} else {
			r.pending = r.pending[:0]
		}
		return
	}
	// rest may overlap pending; append copies like memmove.
	r.pending = append(r.pending[:0], rest...)
}

// frame handles the frame at the start of buf and returns its length, or 0
// if buf does not hold all of it yet.
func (r *Reader) frame(buf []byte, fn func(Opcode, []byte) error) (int, error) {
	if len(buf) < 2 {
		return 0, nil
	}
	b0, b1 := buf[0], buf[1]
	fin := b0&0x80 != 0
	op := Opcode(b0 & 0x0F)
	if b0&0x70 != 0 {
		return 0, protocolErr("reserved bits set without an extension")
	}
	if b1&0x80 == 0 {
		return 0, protocolErr("client frames must be masked")
	}
	header := 2
	length := uint64(b1 & 0x7F)
	switch length {
	case 126:
		if len(buf) < 4 {
			return 0, nil
		}
		length = uint64(binary.BigEndian.Uint16(buf[2:]))
		header = 4
	case 127:
		if len(buf) < 10 {
			return 0, nil
		}
		length = binary.BigEndian.Uint64(buf[2:])
		header = 10
		if length>>63 != 0 {
			return 0, protocolErr("payload length with the top bit set")
		}
	}
	switch op {
	case Close, Ping, Pong:
		if !fin {
			return 0, protocolErr("fragmented control frame")
		}
		if length > maxControlPayload {
			return 0, protocolErr("control frame payload over 125 bytes")
		}
	case Text, Binary:
		if r.inMessage {
			return 0, protocolErr("new message before the last fragment of the previous one")
		}
		if length > uint64(r.limit) {
			return 0, ErrTooLarge
		}
	case Continuation:
		if !r.inMessage {
			return 0, protocolErr("continuation frame without a message")
		}
		if length > uint64(r.limit-len(r.message)) {
			return 0, ErrTooLarge
		}
	default:
		return 0, protocolErr("unknown opcode %d", op)
	}
	total := header + 4 + int(length)
	if len(buf) < total {
		return 0, nil
	}
	payload := buf[header+4 : total]
	unmask(payload, buf[header:header+4])

	switch {
	case op == Close:
		if _, _, err := ParseClose(payload); err != nil {
			return 0, err
		}
		return total, fn(op, payload)
	case op > Close: // control frames may come between fragments
		return total, fn(op, payload)
	case op != Continuation && fin: // the usual case: a whole message
		if op == Text && !utf8.Valid(payload) {
			return 0, ErrInvalidUTF8
		}
		return total, fn(op, payload)
	case op != Continuation: // first fragment
		r.inMessage, r.messageOp = true, op
		r.message = append(r.message[:0], payload...)
		return total, nil
	default:
		r.message = append(r.message, payload...)
		if !fin {
			return total, nil
		}
		msg := r.message
		r.inMessage, r.message = false, nil
		if r.messageOp == Text && !utf8.Valid(msg) {
			return 0, ErrInvalidUTF8
		}
		return total, fn(r.messageOp, msg)
	}
}

// NoStatus is the code of a close frame without one (1005): it is never
// sent, only reported.
const NoStatus = 1005

// ParseClose reads a close frame's payload: its status code (NoStatus if
// it has none) and reason. A payload of one byte, a code that may not be
// sent (RFC 6455 section 7.4) or a reason that is not UTF-8 is an error.
func ParseClose(payload []byte) (code int, reason string, err error) {
	switch {
	case len(payload) == 0:
		return NoStatus, "", nil
	case len(payload) == 1:
		return 0, "", protocolErr("close frame with a one-byte payload")
	}
	code = int(binary.BigEndian.Uint16(payload))
	if !validCloseCode(code) {
		return 0, "", protocolErr("close code %d may not be sent", code)
	}
	if !utf8.Valid(payload[2:]) {
		return 0, "", fmt.Errorf("%w: close reason", ErrInvalidUTF8)
	}
	return code, string(payload[2:]), nil
}

// validCloseCode reports whether an endpoint may send code: the codes RFC
// 6455 and the IANA registry define for use in frames (1004, 1005, 1006
// and 1015 are reserved), and those for libraries and applications
// (3000-4999).
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	default:
		return code >= 3000 && code <= 4999
	}
}

// unmask XORs payload with the 4-byte key, eight bytes at a time where it
// can.
func unmask(payload, key []byte) {
	k := binary.LittleEndian.Uint32(key)
	k8 := uint64(k) | uint64(k)<<32
	i := 0
	for ; i+8 <= len(payload); i += 8 {
		v := binary.LittleEndian.Uint64(payload[i:])
		binary.LittleEndian.PutUint64(payload[i:], v^k8)
	}
	for ; i < len(payload); i++ {
		payload[i] ^= key[i&3]
	}
}

// AppendFrame appends a whole, unmasked frame (as a server sends) of op
// with payload to dst.
func AppendFrame(dst []byte, op Opcode, payload []byte) []byte {
	dst = append(dst, 0x80|byte(op))
	switch n := len(payload); {
	case n < 126:
		dst = append(dst, byte(n))
	case n < 1<<16:
		dst = append(dst, 126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, 127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	return append(dst, payload...)
}
