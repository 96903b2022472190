package ingest

import (
	"bytes"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The fast path for frames. encoding/json cost more CPU per event than
// anything else on a node (reflection, two passes, an allocation per
// field), so the common shapes of frames, flat objects of plain strings
// and numbers, are scanned here in one pass. Anything else (escapes,
// nested values, nulls, keys in another case, odd numbers) makes the scan
// give up, and encoding/json decodes the frame as before, with its errors.
// The fuzz tests check that whatever the fast path accepts, encoding/json
// decodes to the same values.

// scanner reads a JSON text; every method returns false when the text is
// not in the simple form it handles.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) skipSpace() {
	// Frames from JSON.stringify have no space: one comparison for the
	// common case.
	for s.i < len(s.b) && s.b[s.i] <= ' ' {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// next skips space and consumes c if it comes next.
func (s *scanner) next(c byte) bool {
	s.skipSpace()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// end reports whether only space is left.
func (s *scanner) end() bool {
	s.skipSpace()
	return s.i == len(s.b)
}

// str reads a string without escapes; the bytes alias the input.
func (s *scanner) str() ([]byte, bool) {
	if !s.next('"') {
		return nil, false
	}
	start, ascii := s.i, true
	for ; s.i < len(s.b); s.i++ {
		c := s.b[s.i]
		if !strSpecial[c] {
			continue
		}
		switch {
		case c == '"':
			v := s.b[start:s.i]
			s.i++
			if !ascii && !utf8.Valid(v) {
				return nil, false // encoding/json would replace bytes
			}
			return v, true
		case c >= 0x80:
			ascii = false
		default: // an escape or a control character
			return nil, false
		}
	}
	return nil, false
}

// strSpecial marks the bytes that end a plain ASCII string or make it
// something else: the quote, the backslash, control characters, and
// bytes of UTF-8 sequences. One lookup a byte for the rest.
var strSpecial = func() (t [256]bool) {
	for c := range 256 {
		t[c] = c == '"' || c == '\\' || c < 0x20 || c >= 0x80
	}
	return t
}()

// num reads a number in JSON's grammar. Integers, which are most numbers
// of frames, are added up as their digits are read.
func (s *scanner) num() (float64, bool) {
	s.skipSpace()
	start := s.i
	neg := s.i < len(s.b) && s.b[s.i] == '-'
	if neg {
		s.i++
	}
	intStart := s.i
	var v int64
	for s.i < len(s.b) {
		d := s.b[s.i] - '0'
		if d > 9 {
			break
		}
		v = v*10 + int64(d) // wraps past 18 digits; not used then
		s.i++
	}
	n := s.i - intStart
	if n == 0 || n > 1 && s.b[intStart] == '0' {
		return 0, false // no digits, or a leading zero
	}
	simple := n <= 15 // a float64 holds the integer exactly
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if s.digits() == 0 {
			return 0, false
		}
		simple = false
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if s.digits() == 0 {
			return 0, false
		}
		simple = false
	}
	if simple {
		if neg {
			v = -v
		}
		return float64(v), true
	}
	f, err := strconv.ParseFloat(string(s.b[start:s.i]), 64)
	return f, err == nil
}

func (s *scanner) digits() int {
	start := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i - start
}

// skip reads a value of a field the frame does not use: a plain string, a
// number, or a literal.
func (s *scanner) skip() bool {
	s.skipSpace()
	if s.i >= len(s.b) {
		return false
	}
	switch s.b[s.i] {
	case '"':
		_, ok := s.str()
		return ok
	case 't':
		return s.literal("true")
	case 'f':
		return s.literal("false")
	case 'n':
		return s.literal("null")
	default:
		_, ok := s.num()
		return ok
	}
}

func (s *scanner) literal(word string) bool {
	if len(s.b)-s.i >= len(word) && string(s.b[s.i:s.i+len(word)]) == word {
		s.i += len(word)
		return true
	}
	return false
}

// object reads an object, calling field with each key; field reads the
// value and returns false to give up.
func (s *scanner) object(field func(key []byte) bool) bool {
	if !s.next('{') {
		return false
	}
	if s.next('}') {
		return true
	}
	for {
		key, ok := s.str()
		if !ok || !s.next(':') || !field(key) {
			return false
		}
		if s.next('}') {
			return true
		}
		if !s.next(',') {
			return false
		}
	}
}

// unknown reads the value of a key the frame does not name; it gives up
// on a key that differs from a known one only in case, which
// encoding/json would match.
func (s *scanner) unknown(key []byte, known ...string) bool {
	for _, k := range known {
		if strings.EqualFold(string(key), k) {
			return false
		}
	}
	return s.skip()
}

// fastClassic decodes a classic frame {"id":…,"x":…,"y":…} with plain
// values and no "type". ok is false when encoding/json must decide.
func fastClassic(data []byte) (id []byte, x, y float64, ok bool) {
	s := scanner{b: data}
	var hasID, hasX, hasY bool
	ok = s.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "id":
			id, ok = s.str()
			hasID = true
		case "x":
			x, ok = s.num()
			hasX = true
		case "y":
			y, ok = s.num()
			hasY = true
		default:
			ok = s.unknown(key, "id", "x", "y", "type")
		}
		return ok
	})
	return id, x, y, ok && s.end() && hasID && hasX && hasY
}

// fastBatch decodes a batch frame whose events are flat objects of plain
// values into f. ok is false when encoding/json must decide.
func fastBatch(data []byte, f *batchFrame) bool {
	*f = batchFrame{Events: f.Events[:0], converted: f.converted, limit: f.limit} // f may be scratch of an earlier frame
	s := scanner{b: data}
	seenEvents := false
	ok := s.object(func(key []byte) bool {
		switch string(key) {
		case "type":
			t, ok := s.str()
			f.Type = string(t)
			return ok
		case "seq":
			s.skipSpace()
			start := s.i
			n := s.digits()
			if n == 0 || n > 20 || (n > 1 && s.b[start] == '0') {
				return false
			}
			// A fraction or exponent is not an integer for encoding/json.
			if s.i < len(s.b) && (s.b[s.i] == '.' || s.b[s.i] == 'e' || s.b[s.i] == 'E') {
				return false
			}
			v, err := strconv.ParseUint(string(s.b[start:s.i]), 10, 64)
			f.Seq = v
			return err == nil
		case "events":
			if seenEvents {
				return false // encoding/json would decode over the first
			}
			seenEvents = true
			return s.events(f)
		default:
			return s.unknown(key, "type", "seq", "events")
		}
	})
	return ok && s.end()
}

// presizeEvents bounds the events a batch's slice is made for at first.
const presizeEvents = 256

// events reads a batch's array of events.
func (s *scanner) events(f *batchFrame) bool {
	if !s.next('[') {
		return false
	}
	if f.Events == nil {
		// One allocation for the batch rather than a growing slice:
		// there are fewer events than braces left in the frame (and a
		// frame of braces cannot ask for more than presizeEvents).
		n := min(bytes.Count(s.b[s.i:], []byte("{")), presizeEvents)
		if f.limit > 0 {
			n = min(n, f.limit)
		}
		f.Events = make([]trackerEvent, 0, n)
	}
	f.Events = f.Events[:0]
	if s.next(']') {
		return true
	}
	var last trackerEvent // strings repeat from event to event
	for {
		var e trackerEvent
		ok := s.object(func(key []byte) bool {
			switch string(key) {
			case "k":
				return s.strLike(&e.Kind, last.Kind)
			case "p":
				return s.strLike(&e.Path, last.Path)
			case "sel":
				return s.strLike(&e.Target, last.Target)
			case "a":
				return s.numTo(&e.Age)
			case "x":
				return s.numTo(&e.X)
			case "y":
				return s.numTo(&e.Y)
			case "vw":
				return s.numTo(&e.VW)
			case "vh":
				return s.numTo(&e.VH)
			case "ph":
				return s.numTo(&e.PH)
			case "ox":
				return s.numTo(&e.OX)
			case "oy":
				return s.numTo(&e.OY)
			default:
				return s.unknown(key, "k", "p", "sel", "a", "x", "y", "vw", "vh", "ph", "ox", "oy")
			}
		})
		if !ok {
			return false
		}
		if f.limit > 0 && len(f.Events) == f.limit {
			f.overLimit = true
			return false
		}
		f.Events = append(f.Events, e)
		last = e
		if s.next(']') {
			return true
		}
		if !s.next(',') {
			return false
		}
	}
}

func (s *scanner) numTo(v *float64) bool {
	n, ok := s.num()
	*v = n
	return ok
}

// strLike reads a string into v, reusing prev when they are equal.
func (s *scanner) strLike(v *string, prev string) bool {
	b, ok := s.str()
	*v = sameString(b, prev)
	return ok
}
