package ingest

import (
	"encoding/json"
	"reflect"
	"testing"
)

var classicSeeds = []string{
	`{"id":"user123","x":10,"y":20}`,
	`{"id":"user123","x":10,"y":20,"ts":1700000000000000000}`,
	` { "y" : -0.5e+3 , "x" : 1E2, "id" : "ünï", "extra": [1] } `,
	`{"ID":"u","x":1,"y":2}`,
	`{"id":"a\"b","x":1,"y":2}`,
	`{"id":"u","x":01,"y":2}`,
	`{"id":"u","x":1,"y":2,"type":"batch"}`,
	`{"id":"u","x":1,"y":2,"n":null,"t":true,"f":false}`,
	`{"id":"u","x":1e400,"y":2}`,
	`{"id":"u","x":1,"y":2}x`,
}

var batchSeeds = []string{
	`{"type":"batch","seq":1,"events":[{"k":"move","a":1,"x":1,"y":2,"vw":3,"vh":4,"p":"/","sel":"a"},{"k":"click","p":"/","ph":9}]}`,
	`{"type":"batch","seq":1,"events":[{"k":"click","x":1,"y":2,"ox":250,"oy":1000,"sel":"a"},{"k":"click","ox":-3,"oy":1e3}]}`,
	`{"type":"batch","seq":18446744073709551615,"events":[{"k":"leave"}]}`,
	`{"type":"batch","seq":18446744073709551616,"events":[]}`,
	`{"type":"batch","seq":1.0,"events":[]}`,
	`{"type":"batch","seq":01,"events":[]}`,
	`{"type":"batch","seq":1,"events":[{"k":"move","X":1}]}`,
	`{"type":"batch","seq":1,"events":[{"k":"move"}],"events":[{"x":1}]}`,
	`{"events":[],"seq":2,"type":"batch","v":"x"}`,
}

// TestFastPathsAgree: the fast paths decode what encoding/json decodes,
// and give up on what they do not handle.
func TestFastPathsAgree(t *testing.T) {
	for _, tc := range []struct {
		name  string
		seeds []string
		check func(*testing.T, []byte) bool
	}{
		{"classic", classicSeeds, checkFastClassic},
		{"batch", batchSeeds, checkFastBatch},
	} {
		accepted := 0
		for _, s := range tc.seeds {
			if tc.check(t, []byte(s)) {
				accepted++
			}
		}
		if accepted < 3 {
			t.Errorf("%s: the fast path took %d of the seeds; want at least the plain ones", tc.name, accepted)
		}
	}
}

// checkFastClassic reports whether the fast path took data, and fails t if
// encoding/json disagrees with what it decoded.
func checkFastClassic(t *testing.T, data []byte) bool {
	t.Helper()
	id, x, y, ok := fastClassic(data)
	if !ok {
		return false
	}
	var f struct {
		classicFrame
		frameType
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatalf("fast path took %q, encoding/json: %v", data, err)
	}
	if f.Type != "" || f.ID == nil || f.X == nil || f.Y == nil || *f.ID != string(id) || *f.X != x || *f.Y != y {
		t.Fatalf("fast path took %q as %q %v %v; encoding/json: %+v", data, id, x, y, f)
	}
	return true
}

func checkFastBatch(t *testing.T, data []byte) bool {
	t.Helper()
	var fast batchFrame
	if !fastBatch(data, &fast) {
		return false
	}
	var slow batchFrame
	if err := json.Unmarshal(data, &slow); err != nil {
		t.Fatalf("fast path took %q, encoding/json: %v", data, err)
	}
	if len(fast.Events) == 0 && len(slow.Events) == 0 {
		fast.Events, slow.Events = nil, nil
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("fast path took %q as %+v; encoding/json: %+v", data, fast, slow)
	}
	return true
}

// FuzzFastClassic: whatever the fast path accepts, encoding/json decodes
// to the same values.
func FuzzFastClassic(f *testing.F) {
	for _, s := range classicSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkFastClassic(t, data) })
}

// FuzzFastBatch is the same for batches.
func FuzzFastBatch(f *testing.F) {
	for _, s := range batchSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkFastBatch(t, data) })
}
