package aggregator

import (
	"encoding/json"
	"fmt"
)

// snapshotVersion is the version of the stored form of a site that this
// aggregator writes. Raise it whenever a stored field is renamed, removed
// or changes meaning, and teach decodeSnapshot to read the version before;
// testdata holds a snapshot of every earlier version, which must still
// load (TestSnapshotsOfEarlierVersionsLoad), and the golden file of the
// current one (TestSnapshotGolden).
//
// Version 0 is the bare JSON of Site that aggregators wrote before
// snapshots had a version; version 1 is the same Site in an envelope.
const snapshotVersion = 1

// snapshotEnvelope is the stored form of a site's snapshot. Its keys are
// not among Site's, so a version 0 snapshot, the bare Site, is told apart
// by having no "site".
type snapshotEnvelope struct {
	Format int             `json:"format"`
	Site   json.RawMessage `json:"site"`
}

// encodeSnapshot returns the stored form of s.
func encodeSnapshot(s *Site) ([]byte, error) {
	site, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("encode site: %w", err)
	}
	return json.Marshal(snapshotEnvelope{Format: snapshotVersion, Site: site})
}

// decodeSnapshot reads a snapshot of any version up to snapshotVersion. A
// later version is an error rather than a guess: an older aggregator that
// read it would drop what it does not know and write the loss back.
func decodeSnapshot(data []byte) (*Site, error) {
	var env snapshotEnvelope
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, fmt.Errorf("decode snapshot: %w", err)
	}
	site := env.Site
	switch {
	case env.Site == nil:
		site = data // version 0: the bare site
	case env.Format < 1 || env.Format > snapshotVersion:
		return nil, fmt.Errorf("decode snapshot: version %d, this aggregator reads 0 to %d", env.Format, snapshotVersion)
	}
	s := newSite()
	if err := json.Unmarshal(site, s); err != nil {
		return nil, fmt.Errorf("decode snapshot of version %d: %w", env.Format, err)
	}
	s.fill()
	return s, nil
}
