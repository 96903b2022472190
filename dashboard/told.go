package dashboard

import (
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/pulse-analytics/pulse/event"
)

// toldFresh is how recent an ingest node's status must be to be shown:
// nodes report every 5 s, and a status that expired from the bucket
// leaves no mark a watch would see.
const toldFresh = 30 * time.Second

// toldWatch keeps the latest status of every ingest node, from a watch of
// the nodes bucket, so every site page can show what trackers and widgets
// are told without reading the bucket per update.
type toldWatch struct {
	watcher jetstream.KeyWatcher

	mu    sync.Mutex
	nodes map[string]event.NodeStatus // by key
}

// watchTold starts watching the ingest nodes' statuses in kv.
func watchTold(w jetstream.KeyWatcher) *toldWatch {
	t := &toldWatch{watcher: w, nodes: make(map[string]event.NodeStatus)}
	go t.run()
	return t
}

func (t *toldWatch) run() {
	for e := range t.watcher.Updates() {
		if e == nil {
			continue // the initial values are in
		}
		t.mu.Lock()
		var st event.NodeStatus
		switch {
		case e.Operation() != jetstream.KeyValuePut:
			delete(t.nodes, e.Key())
		case json.Unmarshal(e.Value(), &st) == nil && st.Kind == "ingest":
			t.nodes[e.Key()] = st
		}
		t.mu.Unlock()
	}
}

// current returns the ingest nodes that reported within toldFresh of now,
// by id.
func (t *toldWatch) current(now time.Time) []event.NodeStatus {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []event.NodeStatus
	for _, st := range t.nodes {
		if now.Sub(time.UnixMilli(st.Updated)) <= toldFresh {
			out = append(out, st)
		}
	}
	slices.SortFunc(out, func(a, b event.NodeStatus) int { return strings.Compare(a.ID, b.ID) })
	return out
}

func (t *toldWatch) stop() error { return t.watcher.Stop() }
