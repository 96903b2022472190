package event

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"reflect"
	"slices"
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
				{Kind: KindClick, T: 1_700_000_000_450, X: 640, Y: 400, VW: 1280, VH: 800, OX: 250, OY: 1000, Path: "/", Target: "button#pay"},
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

// TestFormat1StillDecodes: a batch written before events had offsets (format
// 1, in streams of earlier versions) decodes, with no offsets.
func TestFormat1StillDecodes(t *testing.T) {
	data := []byte{batchFormat1}
	for _, s := range []string{"shop", "s1", "v1", "n2"} {
		data = appendString(data, s)
	}
	data = binary.AppendUvarint(data, 42)
	data = binary.AppendVarint(data, 1_700_000_000_500)
	data = binary.AppendUvarint(data, 1)
	data = append(data, byte(KindClick))
	for _, v := range []int64{-50, 640, 400, 1280, 800, 0} { // t, x, y, vw, vh, ph
		data = binary.AppendVarint(data, v)
	}
	for _, s := range []string{"/", "", "button#pay"} {
		data = appendString(data, s)
	}
	var got Batch
	if err := DecodeBatch(data, &got); err != nil {
		t.Fatal(err)
	}
	want := Batch{Site: "shop", Session: "s1", Visitor: "v1", Seq: 42, Node: "n2", Received: 1_700_000_000_500, Events: []Event{
		{Kind: KindClick, T: 1_700_000_000_450, X: 640, Y: 400, VW: 1280, VH: 800, Path: "/", Target: "button#pay"},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("format 1:\n got %+v\nwant %+v", got, want)
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

// TestBatchListRoundTrip: a list of batches decodes to its batches, in
// order, and a single batch decodes as a list of one.
func TestBatchListRoundTrip(t *testing.T) {
	want := sampleBatches()
	ptrs := make([]*Batch, len(want))
	for i := range want {
		ptrs[i] = &want[i]
	}
	for name, tc := range map[string]struct {
		data []byte
		want []Batch
	}{
		"list":   {AppendBatches(nil, ptrs), want},
		"empty":  {AppendBatches(nil, nil), nil},
		"single": {want[1].AppendBinary(nil), want[1:2]},
	} {
		got := decodeAll(t, tc.data)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", name, got, tc.want)
		}
	}
	list := AppendBatches(nil, ptrs)
	for _, tc := range []struct {
		name, want string
		data       []byte
	}{
		{"truncated", "truncated", list[:len(list)-1]},
		{"trailing bytes", "after the last batch", append(append([]byte{}, list...), 0)},
		{"count too large", "cannot fit", []byte{batchList, 0xff, 0x01, batchFormat1}},
		{"bad batch", "unknown batch format", []byte{batchList, 1, 0x07, 0, 0, 0, 0, 0, 0, 0}},
	} {
		var b Batch
		err := DecodeBatches(tc.data, &b, func(*Batch) {})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error with %q", tc.name, err, tc.want)
		}
	}
}

// decodeAll returns copies of the batches of data, nil Events for none.
func decodeAll(t *testing.T, data []byte) []Batch {
	t.Helper()
	var all []Batch
	var b Batch
	if err := DecodeBatches(data, &b, func(b *Batch) {
		c := *b
		c.Events = slices.Clone(b.Events)
		if len(c.Events) == 0 {
			c.Events = nil
		}
		all = append(all, c)
	}); err != nil {
		t.Fatal(err)
	}
	return all
}

// FuzzDecodeBatch: no input panics or allocates beyond its size, and what
// decodes, one batch or a list, encodes back to the same batches.
func FuzzDecodeBatch(f *testing.F) {
	batches := sampleBatches()
	ptrs := make([]*Batch, len(batches))
	for i := range batches {
		f.Add(batches[i].AppendBinary(nil))
		ptrs[i] = &batches[i]
	}
	f.Add(AppendBatches(nil, ptrs))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 0 && data[0] == '{' {
			return // the JSON form is encoding/json's
		}
		var all []*Batch
		var b Batch
		if err := DecodeBatches(data, &b, func(b *Batch) {
			c := *b
			c.Events = slices.Clone(b.Events)
			all = append(all, &c)
		}); err != nil {
			return
		}
		again := decodeAll(t, AppendBatches(nil, all))
		if len(again) != len(all) {
			t.Fatalf("%d batches re-encoded, %d decoded", len(all), len(again))
		}
		for i, b := range all {
			if len(b.Events) == 0 {
				b.Events = nil
			}
			if !reflect.DeepEqual(*b, again[i]) {
				t.Fatalf("round trip changed batch %d:\n%+v\n%+v", i, *b, again[i])
			}
		}
	})
}

// TestReaderVarints checks the reader's one-byte fast path and the rest
// against encoding/binary, around every length boundary.
func TestReaderVarints(t *testing.T) {
	var signed []int64
	for _, edge := range []int64{0, 1 << 6, 1 << 13, 1 << 20, 1 << 27, 1 << 34, 1 << 62} {
		for d := int64(-2); d <= 2; d++ {
			signed = append(signed, edge+d, -edge+d)
		}
	}
	signed = append(signed, math.MaxInt64, math.MinInt64)
	for _, v := range signed {
		r := reader{data: binary.AppendVarint(nil, v)}
		if got := r.varint(); got != v || r.err != nil || len(r.data) != 0 {
			t.Errorf("varint %d: read %d, err %v, %d bytes left", v, got, r.err, len(r.data))
		}
		u := uint64(v)
		r = reader{data: binary.AppendUvarint(nil, u)}
		if got := r.uvarint(); got != u || r.err != nil || len(r.data) != 0 {
			t.Errorf("uvarint %d: read %d, err %v, %d bytes left", u, got, r.err, len(r.data))
		}
	}
}
