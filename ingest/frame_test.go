package ingest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/pulse-analytics/pulse/event"
)

func TestDecodeClassic(t *testing.T) {
	tests := []struct {
		name    string
		frame   string
		visitor string
		x, y    int32
		wantErr string
	}{
		{"seed frame", `{"id":"user123","x":10,"y":20}`, "user123", 10, 20, ""},
		{"fractions truncate", `{"id":"u","x":10.9,"y":-3.2}`, "u", 10, -3, ""},
		{"extra fields ignored", `{"id":"u","x":1,"y":2,"t":99}`, "u", 1, 2, ""},
		{"missing id", `{"x":1,"y":2}`, "", 0, 0, "want {"},
		{"missing y", `{"id":"u","x":1}`, "", 0, 0, "want {"},
		{"empty id", `{"id":"","x":1,"y":2}`, "", 0, 0, "id must be"},
		{"long id", `{"id":"` + strings.Repeat("a", 129) + `","x":1,"y":2}`, "", 0, 0, "id must be"},
		{"x too large", `{"id":"u","x":1e7,"y":2}`, "", 0, 0, "x out of range"},
		{"y string", `{"id":"u","x":1,"y":"2"}`, "", 0, 0, "not a JSON object"},
		{"not json", `hello`, "", 0, 0, "not a JSON object"},
		{"array", `[1,2]`, "", 0, 0, "not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, x, y, err := decodeClassic([]byte(tt.frame), "")
			if tt.wantErr != "" {
				if err == nil || !errors.Is(err, errFrame) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want invalid frame containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || v != tt.visitor || x != tt.x || y != tt.y {
				t.Fatalf("got %q %d %d %v, want %q %d %d", v, x, y, err, tt.visitor, tt.x, tt.y)
			}
		})
	}
}

func TestDecodeBatch(t *testing.T) {
	const now = 1_700_000_000_000
	tests := []struct {
		name    string
		frame   string
		seq     uint64
		want    []event.Event
		wantErr string
	}{
		{
			name:  "move and click",
			frame: `{"type":"batch","seq":3,"events":[{"k":"move","a":120,"x":5,"y":6,"vw":800,"vh":600,"p":"/a"},{"k":"click","a":0,"x":1,"y":2,"p":"/a","sel":"button#buy"}]}`,
			seq:   3,
			want: []event.Event{
				{Kind: event.KindMove, T: now - 120, X: 5, Y: 6, VW: 800, VH: 600, Path: "/a"},
				{Kind: event.KindClick, T: now, X: 1, Y: 2, Path: "/a", Target: "button#buy"},
			},
		},
		{
			name:  "click with its place on the target",
			frame: `{"type":"batch","seq":2,"events":[{"k":"click","x":1,"y":2,"ox":250.4,"oy":1000,"sel":"a"},{"k":"click","ox":-2,"oy":1003}]}`,
			seq:   2,
			want: []event.Event{
				{Kind: event.KindClick, T: now, X: 1, Y: 2, OX: 250, OY: 1000, Target: "a"},
				{Kind: event.KindClick, T: now, OX: 0, OY: 1000}, // a border's rounding, clamped
			},
		},
		{name: "offset not a number", frame: `{"type":"batch","seq":1,"events":[{"k":"click","ox":1e300}]}`, wantErr: "ox out of range"},
		{name: "long path cut", frame: `{"type":"batch","seq":1,"events":[{"k":"scroll","p":"/` + strings.Repeat("é", 200) + `"}]}`, seq: 1,
			want: []event.Event{{Kind: event.KindScroll, T: now, Path: "/" + strings.Repeat("é", 127)}}},
		{name: "seq zero", frame: `{"type":"batch","seq":0,"events":[{"k":"move"}]}`, wantErr: "seq must be positive"},
		{name: "no events", frame: `{"type":"batch","seq":1,"events":[]}`, wantErr: "1 to 4 events"},
		{name: "too many events", frame: `{"type":"batch","seq":1,"events":[{"k":"move"},{"k":"move"},{"k":"move"},{"k":"move"},{"k":"move"}]}`, wantErr: "1 to 4 events"},
		{name: "unknown kind", frame: `{"type":"batch","seq":1,"events":[{"k":"keypress"}]}`, wantErr: `unknown event kind "keypress"`},
		{name: "negative age", frame: `{"type":"batch","seq":1,"events":[{"k":"move","a":-1}]}`, wantErr: "age out of range"},
		{name: "ancient age", frame: `{"type":"batch","seq":1,"events":[{"k":"move","a":1e12}]}`, wantErr: "age out of range"},
		{name: "huge viewport", frame: `{"type":"batch","seq":1,"events":[{"k":"move","vw":1e9}]}`, wantErr: "vw out of range"},
		{name: "wrong type", frame: `{"type":"hello","seq":1}`, wantErr: `unexpected frame type "hello"`},
		{name: "truncated", frame: `{"type":"batch","seq":1,"events":[`, wantErr: "not a JSON object"},
	}
	// One scratch frame for all, as the node reuses them: nothing of a
	// frame may leak into the next.
	var scratch batchFrame
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seq, events, err := decodeBatch([]byte(tt.frame), &scratch, now, 4)
			if tt.wantErr != "" {
				if err == nil || !errors.Is(err, errFrame) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want invalid frame containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || seq != tt.seq || len(events) != len(tt.want) {
				t.Fatalf("got seq %d, %d events, %v", seq, len(events), err)
			}
			for i := range events {
				if events[i] != tt.want[i] {
					t.Errorf("event %d = %+v, want %+v", i, events[i], tt.want[i])
				}
			}
		})
	}
}

func FuzzDecodeClassic(f *testing.F) {
	for _, s := range []string{`{"id":"user123","x":10,"y":20}`, `{"id":"","x":1e400,"y":-0}`, `{}`, `null`, `{"id":"\ud800","x":1,"y":2}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		v, x, y, err := decodeClassic(data, "")
		if err != nil {
			if !errors.Is(err, errFrame) {
				t.Fatalf("error %v is not an invalid-frame error", err)
			}
			return
		}
		if v == "" || len(v) > maxVisitorLen || x < -maxCoord || x > maxCoord || y < -maxCoord || y > maxCoord {
			t.Fatalf("accepted out-of-bounds frame: %q %d %d", v, x, y)
		}
	})
}

func FuzzDecodeBatch(f *testing.F) {
	for _, s := range []string{
		`{"type":"batch","seq":1,"events":[{"k":"move","a":1,"x":1,"y":2,"vw":3,"vh":4,"p":"/","sel":"a"}]}`,
		`{"type":"batch","seq":18446744073709551615,"events":[{"k":"leave"}]}`,
		`{"type":"batch","seq":1,"events":[{"k":"click","p":"\xff\xfe"}]}`,
		`{"type":"batch"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const now = 1_700_000_000_000
		seq, events, err := decodeBatch(data, &batchFrame{}, now, 50)
		if err != nil {
			if !errors.Is(err, errFrame) {
				t.Fatalf("error %v is not an invalid-frame error", err)
			}
			return
		}
		if seq == 0 || len(events) == 0 || len(events) > 50 {
			t.Fatalf("accepted seq %d with %d events", seq, len(events))
		}
		for _, e := range events {
			if e.Kind.String() == "" || e.T > now || e.T < now-maxAgeMs ||
				len(e.Path) > maxPathLen || len(e.Target) > maxTargetLen ||
				!utf8.ValidString(e.Path) || !utf8.ValidString(e.Target) {
				t.Fatalf("accepted bad event %+v", e)
			}
			if _, err := e.Kind.MarshalText(); err != nil {
				t.Fatalf("accepted invalid kind: %v", err)
			}
		}
	})
}

// decodeClassic and decodeBatch read a frame the way a connection does,
// through decodeFrame: as a classic client's, and as a tracker's that said
// hello. So the tables and the fuzzers cover the path production takes.
func decodeClassic(data []byte, prev string) (visitor string, x, y int32, err error) {
	d, err := decodeFrame(data, false, prev, nil, 0, 1)
	if err == nil && d.batch {
		return "", 0, 0, fmt.Errorf("a batch from a connection without hello")
	}
	return d.visitor, d.x, d.y, err
}

func decodeBatch(data []byte, f *batchFrame, receivedMs int64, maxEvents int) (seq uint64, events []event.Event, err error) {
	d, err := decodeFrame(data, true, "", f, receivedMs, maxEvents)
	if err == nil && !d.batch {
		return 0, nil, frameErr("a classic move, not a batch")
	}
	return d.seq, d.events, err
}
