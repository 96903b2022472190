package aggregator

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestSnapshotGolden pins the stored form of a snapshot: a change to it
// that is not a new snapshotVersion fails here.
func TestSnapshotGolden(t *testing.T) {
	data, err := encodeSnapshot(goldenSite())
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if err := json.Indent(&got, data, "", " "); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "snapshot-v1.golden")
	if *update {
		if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("stored snapshot differs from %s; if that is meant, raise snapshotVersion, keep %s as the previous version's testdata and run go test -update:\n%s",
			golden, golden, got.Bytes())
	}
}

// TestSnapshotsOfEarlierVersionsLoad loads snapshots as earlier
// aggregators wrote them, testdata/snapshot-v*.json (v0 before snapshots
// had a version, v1-049fdbf before heatmaps by width), and the current
// golden file, and checks that the site they hold is the one that was
// written, down to its overview. Fields added since a snapshot was
// written start empty; the current golden, re-encoded, must come out the
// same.
func TestSnapshotsOfEarlierVersionsLoad(t *testing.T) {
	want := goldenSite()
	old, err := filepath.Glob(filepath.Join("testdata", "snapshot-v*.json"))
	if err != nil || len(old) < 2 {
		t.Fatalf("snapshots of earlier versions: %v %v", old, err)
	}
	for _, path := range append(old, filepath.Join("testdata", "snapshot-v1.golden")) {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			got, err := decodeSnapshot(data)
			if err != nil {
				t.Fatal(err)
			}
			if got.Seq != want.Seq || got.Events != want.Events || got.ByKind != want.ByKind {
				t.Errorf("seq %d, events %d by kind %v; want %d, %d, %v", got.Seq, got.Events, got.ByKind, want.Seq, want.Events, want.ByKind)
			}
			if g, w := got.overview("demo", goldenNow), want.overview("demo", goldenNow); !reflect.DeepEqual(g, w) {
				t.Errorf("overview of the loaded site:\n%+v\nwant\n%+v", g, w)
			}
			if filepath.Ext(name) != ".golden" {
				return
			}
			// What the next tick writes keeps everything the last one had.
			again, err := encodeSnapshot(got)
			if err != nil {
				t.Fatal(err)
			}
			fresh, _ := encodeSnapshot(want)
			if !bytes.Equal(again, fresh) {
				t.Errorf("re-encoded snapshot differs from the site's own:\n%s\n%s", again, fresh)
			}
		})
	}
}

func TestSnapshotDecodeErrors(t *testing.T) {
	tests := []struct {
		name, data, want string
	}{
		{"newer version", `{"format":2,"site":{"events":1}}`, "version 2, this aggregator reads 0 to 1"},
		{"version below 1 in an envelope", `{"format":0,"site":{"events":1}}`, "version 0"},
		{"not JSON", `{"events":`, "decode snapshot"},
		{"site of the wrong shape", `{"format":1,"site":{"events":"many"}}`, "decode snapshot of version 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeSnapshot([]byte(tt.data))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one with %q", err, tt.want)
			}
		})
	}
}
