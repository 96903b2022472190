package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/pulse-analytics/pulse/event"
)

// Frame limits. A frame is outside input, so every field is bounded.
const (
	// maxVisitorLen bounds a classic client's visitor id.
	maxVisitorLen = 128
	// maxPathLen bounds a page path; longer paths are cut, not refused.
	maxPathLen = 256
	// maxTargetLen bounds a click target's CSS selector; cut, not refused.
	maxTargetLen = 128
	// maxCoord bounds coordinates and viewport sizes: no screen or page is
	// a million pixels wide, so larger numbers are garbage.
	maxCoord = 1_000_000
	// maxAgeMs bounds how old an event in a batch may claim to be: a
	// tracker keeps unacked batches for at most a few minutes.
	maxAgeMs = 10 * 60 * 1000
)

// errFrame marks a frame the server refuses; the connection is closed with
// 1007 (invalid payload) and the error's text as the reason.
var errFrame = errors.New("invalid frame")

func frameErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errFrame, fmt.Sprintf(format, args...))
}

// classicFrame is the seed's single-event frame {"id":"user123","x":10,"y":20}.
type classicFrame struct {
	ID *string  `json:"id"`
	X  *float64 `json:"x"`
	Y  *float64 `json:"y"`
}

// decoded is a text frame as decodeFrame read it: a classic move of
// visitor to x, y, or (batch set) a tracker batch.
type decoded struct {
	batch   bool
	visitor string
	x, y    int32
	seq     uint64
	events  []event.Event
}

// decodeFrame decodes a text frame: a classic move, or, on a connection
// that said hello (protocol), a tracker batch. It is the one place that
// chooses between the fast decoders (fastjson.go) and encoding/json: most
// frames are plain and take the fast path; encoding/json reads what the
// fast decoders do not take, to the same result. prev is the connection's
// last visitor, reused rather than allocated again when the frame names
// the same. A batch's events are stamped relative to receivedMs and
// decoded into f's scratch: they are f's until f decodes the next frame.
// f is used only with protocol set. maxEvents bounds the events in one
// batch.
func decodeFrame(data []byte, protocol bool, prev string, f *batchFrame, receivedMs int64, maxEvents int) (decoded, error) {
	if id, fx, fy, ok := fastClassic(data); ok {
		return classicMove(classicValues(sameString(id, prev), fx, fy))
	}
	if protocol && bytes.Contains(data, []byte(`"type":"batch"`)) {
		f.limit = maxEvents
		if fastBatch(data, f) && f.Type == "batch" || f.overLimit {
			return trackerBatch(checkBatch(f, receivedMs, maxEvents))
		}
	}
	var ft frameType
	if err := json.Unmarshal(data, &ft); err != nil {
		return decoded{}, frameErr("not a JSON object: %v", err)
	}
	switch {
	case ft.Type == "":
		var cf classicFrame
		if err := json.Unmarshal(data, &cf); err != nil {
			return decoded{}, frameErr("not a JSON object: %v", err)
		}
		if cf.ID == nil || cf.X == nil || cf.Y == nil {
			return decoded{}, frameErr(`want {"id":string,"x":number,"y":number}`)
		}
		return classicMove(classicValues(*cf.ID, *cf.X, *cf.Y))
	case ft.Type == "batch" && protocol:
		f.limit = maxEvents
		if err := slowBatch(data, f); err != nil {
			return decoded{}, err
		}
		return trackerBatch(checkBatch(f, receivedMs, maxEvents))
	default:
		return decoded{}, frameErr("unexpected frame type %q", ft.Type)
	}
}

func classicMove(visitor string, x, y int32, err error) (decoded, error) {
	return decoded{visitor: visitor, x: x, y: y}, err
}

func trackerBatch(seq uint64, events []event.Event, err error) (decoded, error) {
	return decoded{batch: true, seq: seq, events: events}, err
}

// classicValues checks a classic frame's values.
func classicValues(visitor string, fx, fy float64) (_ string, x, y int32, err error) {
	if err := checkVisitor(visitor); err != nil {
		return "", 0, 0, err
	}
	if x, err = coord("x", fx); err != nil {
		return "", 0, 0, err
	}
	if y, err = coord("y", fy); err != nil {
		return "", 0, 0, err
	}
	return visitor, x, y, nil
}

// sameString returns prev if b holds the same bytes, else b as a new
// string: frames repeat their strings, and this spares the allocations.
func sameString(b []byte, prev string) string {
	if string(b) == prev {
		return prev
	}
	return string(b)
}

func checkVisitor(id string) error {
	if id == "" || len(id) > maxVisitorLen || !utf8.ValidString(id) {
		return frameErr("id must be 1 to %d bytes of UTF-8", maxVisitorLen)
	}
	return nil
}

func coord(name string, v float64) (int32, error) {
	if math.IsNaN(v) || v < -maxCoord || v > maxCoord {
		return 0, frameErr("%s out of range", name)
	}
	return int32(v), nil
}

// offset reads a click's place within its target, in thousandths of the
// box; a click on the border can round just outside, so it is clamped.
func offset(name string, v float64) (int32, error) {
	o, err := coord(name, v)
	return min(max(o, 0), 1000), err
}

// batchFrame is a tracker's batch: {"type":"batch","seq":1,"events":[…]}.
type batchFrame struct {
	Type   string         `json:"type"`
	Seq    uint64         `json:"seq"`
	Events []trackerEvent `json:"events"`
	// converted is scratch for checkBatch's events.
	converted []event.Event
	// limit, if not 0, is the most events the decoders read: a 64 KiB
	// frame of empty objects would otherwise be 20,000 events, a couple
	// of megabytes, before it could be refused. overLimit says a decoder
	// stopped there.
	limit     int
	overLimit bool
}

// trackerEvent is one event as pulse.js sends it.
type trackerEvent struct {
	Kind string `json:"k"`
	// Age is how many milliseconds before sending the batch the event
	// happened; the server turns it into a time on its own clock, so
	// visitors' wrong clocks do not matter.
	Age    float64 `json:"a"`
	X      float64 `json:"x"`
	Y      float64 `json:"y"`
	VW     float64 `json:"vw"`
	VH     float64 `json:"vh"`
	Path   string  `json:"p"`
	Target string  `json:"sel"`
	// PH is the page height, sent with scroll events.
	PH float64 `json:"ph"`
	// OX and OY place a click within its target's box, in thousandths.
	OX float64 `json:"ox"`
	OY float64 `json:"oy"`
}

// frameType peeks at a frame's "type" without decoding the rest; classic
// frames have none.
type frameType struct {
	Type string `json:"type"`
}

// slowBatch decodes a batch with encoding/json, reading no more than
// f.limit events (if set).
func slowBatch(data []byte, f *batchFrame) error {
	var envelope struct {
		Type   string          `json:"type"`
		Seq    uint64          `json:"seq"`
		Events json.RawMessage `json:"events"`
	}
	if err := json.Unmarshal(data, &envelope); err != nil {
		return frameErr("not a batch: %v", err)
	}
	*f = batchFrame{Type: envelope.Type, Seq: envelope.Seq, converted: f.converted, limit: f.limit}
	if len(envelope.Events) == 0 || string(envelope.Events) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(envelope.Events))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		return frameErr("not a batch: events must be an array")
	}
	for dec.More() {
		if f.limit > 0 && len(f.Events) == f.limit {
			f.overLimit = true
			return nil
		}
		var e trackerEvent
		if err := dec.Decode(&e); err != nil {
			return frameErr("not a batch: %v", err)
		}
		f.Events = append(f.Events, e)
	}
	return nil
}

// checkBatch validates a decoded batch frame and converts its events, into
// f's scratch: they are f's until f decodes the next frame.
func checkBatch(f *batchFrame, receivedMs int64, maxEvents int) (seq uint64, events []event.Event, err error) {
	if f.Type != "batch" {
		return 0, nil, frameErr("unknown frame type %q", f.Type)
	}
	if f.Seq == 0 {
		return 0, nil, frameErr("batch seq must be positive")
	}
	if f.overLimit {
		return 0, nil, frameErr("batch must hold 1 to %d events, not more", maxEvents)
	}
	if len(f.Events) == 0 || len(f.Events) > maxEvents {
		return 0, nil, frameErr("batch must hold 1 to %d events, not %d", maxEvents, len(f.Events))
	}
	events = slices.Grow(f.converted[:0], len(f.Events))[:len(f.Events)]
	f.converted = events
	for i := range f.Events {
		if err := convertEvent(&f.Events[i], receivedMs, &events[i]); err != nil {
			return 0, nil, fmt.Errorf("event %d: %w", i, err)
		}
	}
	return f.Seq, events, nil
}

func convertEvent(te *trackerEvent, receivedMs int64, e *event.Event) error {
	k, err := event.ParseKind(te.Kind)
	if err != nil {
		return frameErr("%v", err)
	}
	if math.IsNaN(te.Age) || te.Age < 0 || te.Age > maxAgeMs {
		return frameErr("age out of range")
	}
	x, err := coord("x", te.X)
	if err != nil {
		return err
	}
	y, err := coord("y", te.Y)
	if err != nil {
		return err
	}
	vw, err := coord("vw", te.VW)
	if err != nil {
		return err
	}
	vh, err := coord("vh", te.VH)
	if err != nil {
		return err
	}
	ph, err := coord("ph", te.PH)
	if err != nil {
		return err
	}
	ox, err := offset("ox", te.OX)
	if err != nil {
		return err
	}
	oy, err := offset("oy", te.OY)
	if err != nil {
		return err
	}
	*e = event.Event{
		Kind:   k,
		T:      receivedMs - int64(te.Age),
		X:      x,
		Y:      y,
		VW:     vw,
		VH:     vh,
		PH:     ph,
		OX:     ox,
		OY:     oy,
		Path:   truncate(te.Path, maxPathLen),
		Target: truncate(te.Target, maxTargetLen),
	}
	return nil
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence,
// and replaces invalid UTF-8.
func truncate(s string, n int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Server → tracker messages.

// helloMsg is the first frame the server sends a tracker: its session and
// the rates it must keep.
type helloMsg struct {
	Type    string `json:"type"` // "hello"
	Session string `json:"session"`
	rates
}

// rates are the server-directed intervals of a tracker.
type rates struct {
	// SampleMs is the minimum interval between two recorded mouse moves.
	SampleMs int `json:"sampleMs"`
	// FlushMs is the interval at which the tracker sends its batch.
	FlushMs int `json:"flushMs"`
	// MaxBatch is the most events a batch may hold.
	MaxBatch int `json:"maxBatch"`
}

// rateMsg tells a tracker to change its rates.
type rateMsg struct {
	Type string `json:"type"` // "rate"
	rates
}

// ackMsg acknowledges every batch up to Seq: they are stored and will not
// be lost. At most one is sent per Config.AckInterval.
type ackMsg struct {
	Type string `json:"type"` // "ack"
	Seq  uint64 `json:"seq"`
}
