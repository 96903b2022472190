package event

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func sampleBatches() []Batch {
	return []Batch{
		{Site: "demo", Node: "n1", Received: 1_700_000_000_000},
		{
			Site: "shop", Session: "s1", Visitor: "v1", Seq: 42, Node: "n2", Received: 1_700_000_000_500,
			Events: []Event{
				{Kind: KindMove, T: 1_700_000_000_400, X: 10, Y: -20, VW: 1280, VH: 800, Path: "/"},
				{Kind: KindClick, T: 1_700_000_000_450, X: 640, Y: 400, VW: 1280, VH: 800, Path: "/", Target: "button#pay"},
				{Kind: KindScroll, T: 1_700_000_000_600, Y: 3000, PH: 9000, Path: "/ünïcode"},
			},
		},
		{
			// A classic batch: visitors per event, extreme values.
			Site: "demo", Node: "n1", Received: 5,
			Events: []Event{
				{Kind: KindMove, T: -1 << 40, X: -2147483648, Y: 2147483647, Visitor: "user1"},
				{Kind: KindMove, T: 1 << 40, Visitor: "user2"},
			},
		},
	}
}

// TestBatchRoundTrip: the binary form decodes to the batch it encoded, and
// the JSON form of earlier versions still decodes.
func TestBatchRoundTrip(t *testing.T) {
	for _, want := range sampleBatches() {
		bin := want.AppendBinary(nil)
		js, err := json.Marshal(&want)
		if err != nil {
			t.Fatal(err)
		}
		for name, data := range map[string][]byte{"binary": bin, "json": js} {
			got := Batch{Events: make([]Event, 7)} // storage is reused, contents are not
			if err := DecodeBatch(data, &got); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if len(want.Events) == 0 {
				got.Events, want.Events = nil, nil
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s:\n got %+v\nwant %+v", name, got, want)
			}
		}
		if len(bin) >= len(js) {
			t.Errorf("binary form %d bytes, JSON %d: want it smaller", len(bin), len(js))
		}
	}
}

func TestDecodeBatchErrors(t *testing.T) {
	full := sampleBatches()[1].AppendBinary(nil)
	for _, tc := range []struct {
		name, want string
		data       []byte
	}{
		{"empty", "unknown batch format", nil},
		{"unknown format", "unknown batch format", []byte{0x07, 1, 2}},
		{"truncated", "truncated", full[:len(full)-3]},
		{"trailing bytes", "after the last event", append(append([]byte{}, full...), 0)},
		{"count too large", "cannot fit", []byte{batchFormat1, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0x03}},
		{"bad json", "decode batch", []byte(`{"site":`)},
	} {
		var b Batch
		err := DecodeBatch(tc.data, &b)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error with %q", tc.name, err, tc.want)
		}
	}
}

// FuzzDecodeBatch: no input panics or allocates beyond its size, and what
// decodes encodes back to the same batch.
func FuzzDecodeBatch(f *testing.F) {
	for _, b := range sampleBatches() {
		f.Add(b.AppendBinary(nil))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 0 && data[0] == '{' {
			return // the JSON form is encoding/json's
		}
		var b Batch
		if err := DecodeBatch(data, &b); err != nil {
			return
		}
		var again Batch
		if err := DecodeBatch(b.AppendBinary(nil), &again); err != nil {
			t.Fatalf("re-encoded batch does not decode: %v", err)
		}
		if len(b.Events) == 0 {
			b.Events, again.Events = nil, nil
		}
		if !reflect.DeepEqual(b, again) {
			t.Fatalf("round trip changed the batch:\n%+v\n%+v", b, again)
		}
	})
}
