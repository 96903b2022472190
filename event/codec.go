package event

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Batches travel from ingest to the aggregator in a compact binary form:
// JSON on that hop cost more CPU per event than everything else the
// aggregator does (BenchmarkApplyBatch). The form is
//
//	0xB3 (format 2; 0xB1, format 1, had no ox and oy)
//	site, session, visitor, node: strings
//	seq: uvarint; received: varint (Unix ms)
//	events: uvarint count, then per event
//	  kind: byte; t: varint, ms after received (negative: before)
//	  x, y, vw, vh, ph: varints
//	  ox, oy: varints (format 2 only)
//	  path, visitor, target: strings
//
// where a string is a uvarint length and its bytes. One message can carry
// many batches (an ingest node sends the batches of all its trackers of a
// site together, AppendBatches):
//
//	0xB2, uvarint count, then count batches in the form above
//
// The decoders also read the JSON form of one batch, which streams written
// by earlier versions hold.

// batchFormat2 starts a binary batch (batchFormat1 one written before
// events had offsets, which the decoders still read), batchList a list of
// them; JSON starts with '{'.
const (
	batchFormat1 = 0xB1
	batchList    = 0xB2
	batchFormat2 = 0xB3
)

// AppendBatches appends the list form of batches to dst.
func AppendBatches(dst []byte, batches []*Batch) []byte {
	dst = AppendListHeader(dst, len(batches))
	for _, b := range batches {
		dst = b.AppendBinary(dst)
	}
	return dst
}

// AppendListHeader appends the start of a list of n batches, whose binary
// forms (AppendBinary) must follow.
func AppendListHeader(dst []byte, n int) []byte {
	dst = append(dst, batchList)
	return binary.AppendUvarint(dst, uint64(n))
}

// DecodeBatches calls f with each batch of a message in any form: a list,
// one binary batch or JSON. b holds each batch in turn (its Events'
// storage is reused), so f must not keep it. A message that does not
// decode to its end is an error, after f has seen the batches before the
// fault.
func DecodeBatches(data []byte, b *Batch, f func(*Batch)) error {
	if len(data) == 0 || data[0] != batchList {
		if err := DecodeBatch(data, b); err != nil {
			return err
		}
		f(b)
		return nil
	}
	r := reader{data: data[1:]}
	n := r.uvarint()
	if r.err == nil && n > uint64(len(r.data)/minBatchSize) {
		return fmt.Errorf("decode batches: %d batches cannot fit in %d bytes", n, len(r.data))
	}
	for range n {
		if r.err == nil {
			r.batch(b)
		}
		if r.err != nil {
			return fmt.Errorf("decode batches: %w", r.err)
		}
		f(b)
	}
	if r.err == nil && len(r.data) != 0 {
		return fmt.Errorf("decode batches: %d bytes after the last batch", len(r.data))
	}
	return r.err
}

// minBatchSize is the fewest bytes a batch takes in the binary form: the
// format, four empty strings, seq, received and the event count.
const minBatchSize = 8

// AppendBinary appends b's binary form to dst.
func (b *Batch) AppendBinary(dst []byte) []byte {
	dst = append(dst, batchFormat2)
	dst = appendString(dst, b.Site)
	dst = appendString(dst, b.Session)
	dst = appendString(dst, b.Visitor)
	dst = appendString(dst, b.Node)
	dst = binary.AppendUvarint(dst, b.Seq)
	dst = binary.AppendVarint(dst, b.Received)
	dst = binary.AppendUvarint(dst, uint64(len(b.Events)))
	for i := range b.Events {
		e := &b.Events[i]
		dst = append(dst, byte(e.Kind))
		dst = binary.AppendVarint(dst, e.T-b.Received)
		dst = binary.AppendVarint(dst, int64(e.X))
		dst = binary.AppendVarint(dst, int64(e.Y))
		dst = binary.AppendVarint(dst, int64(e.VW))
		dst = binary.AppendVarint(dst, int64(e.VH))
		dst = binary.AppendVarint(dst, int64(e.PH))
		dst = binary.AppendVarint(dst, int64(e.OX))
		dst = binary.AppendVarint(dst, int64(e.OY))
		dst = appendString(dst, e.Path)
		dst = appendString(dst, e.Visitor)
		dst = appendString(dst, e.Target)
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// minEventSize is the fewest bytes an event takes in the binary form: the
// kind, five one-byte varints, one time varint and three empty strings (in
// format 1; format 2 adds two varints).
const minEventSize = 10

// DecodeBatch decodes a batch in the binary or the JSON form into b,
// reusing b.Events' storage.
func DecodeBatch(data []byte, b *Batch) error {
	if len(data) > 0 && data[0] == '{' {
		*b = Batch{Events: b.Events[:0]}
		return Decode("batch", data, b)
	}
	if err := decodeBinary(data, b); err != nil {
		return fmt.Errorf("decode batch: %w", err)
	}
	return nil
}

var errShort = errors.New("truncated")

func decodeBinary(data []byte, b *Batch) error {
	r := reader{data: data}
	r.batch(b)
	if r.err == nil && len(r.data) != 0 {
		return fmt.Errorf("%d bytes after the last event", len(r.data))
	}
	return r.err
}

// batch reads one batch in the binary form into b.
func (r *reader) batch(b *Batch) {
	if len(r.data) == 0 || r.data[0] != batchFormat1 && r.data[0] != batchFormat2 {
		r.fail(errors.New("unknown batch format"))
		return
	}
	offsets := r.data[0] == batchFormat2
	r.data = r.data[1:]
	// b holds the batch before this one, whose site, node and strings
	// of events most batches share.
	b.Site = r.stringLike(b.Site)
	b.Session = r.string()
	b.Visitor = r.string()
	b.Node = r.stringLike(b.Node)
	b.Seq = r.uvarint()
	b.Received = r.varint()
	n := r.uvarint()
	if r.err != nil {
		return
	}
	if n > uint64(len(r.data)/minEventSize) {
		r.fail(fmt.Errorf("%d events cannot fit in %d bytes", n, len(r.data)))
		return
	}
	var last Event // the events of a batch mostly share their strings
	if len(b.Events) > 0 {
		last = b.Events[len(b.Events)-1]
	}
	events := b.Events[:0]
	for range n {
		var e Event
		e.Kind = Kind(r.byte())
		e.T = b.Received + r.varint()
		e.X = r.int32()
		e.Y = r.int32()
		e.VW = r.int32()
		e.VH = r.int32()
		e.PH = r.int32()
		if offsets {
			e.OX = r.int32()
			e.OY = r.int32()
		}
		e.Path = r.stringLike(last.Path)
		e.Visitor = r.stringLike(last.Visitor)
		e.Target = r.stringLike(last.Target)
		if r.err != nil {
			return
		}
		events = append(events, e)
		last = e
	}
	b.Events = events
}

// reader reads the binary form; the first error sticks.
type reader struct {
	data []byte
	err  error
}

func (r *reader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
	r.data = nil
}

func (r *reader) byte() byte {
	if len(r.data) == 0 {
		r.fail(errShort)
		return 0
	}
	c := r.data[0]
	r.data = r.data[1:]
	return c
}

// uvarint and varint read one-byte varints, most of the numbers and
// string lengths of events, without calling encoding/binary.
func (r *reader) uvarint() uint64 {
	if len(r.data) > 0 && r.data[0] < 0x80 {
		v := r.data[0]
		r.data = r.data[1:]
		return uint64(v)
	}
	v, n := binary.Uvarint(r.data)
	r.skip(n)
	return v
}

func (r *reader) varint() int64 {
	if len(r.data) > 0 && r.data[0] < 0x80 {
		v := r.data[0]
		r.data = r.data[1:]
		return int64(v>>1) ^ -int64(v&1) // zigzag, as binary.Varint
	}
	v, n := binary.Varint(r.data)
	r.skip(n)
	return v
}

// skip moves past a varint of n bytes; n <= 0 is binary's word for a
// truncated or overlong one, after which the reader yields zeros.
func (r *reader) skip(n int) {
	if n <= 0 {
		r.fail(errShort)
		return
	}
	r.data = r.data[n:]
}

func (r *reader) int32() int32 {
	v := r.varint()
	if v < math.MinInt32 || v > math.MaxInt32 {
		r.fail(errors.New("number out of range"))
		return 0
	}
	return int32(v)
}

func (r *reader) string() string { return r.stringLike("") }

// stringLike reads a string, returning prev itself when they are equal, so
// that repeated strings are not allocated again.
func (r *reader) stringLike(prev string) string {
	n := r.uvarint()
	if n > uint64(len(r.data)) {
		r.fail(errShort)
		return ""
	}
	b := r.data[:n]
	r.data = r.data[n:]
	if string(b) == prev {
		return prev
	}
	return string(b)
}
