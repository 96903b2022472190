package dashboard

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pulse-analytics/pulse/store"
)

// toldFresh is how recent an ingest node's status must be to be shown:
// nodes report every 5 s, and a status that expired from the bucket
// leaves no mark a watch would see.
const toldFresh = 30 * time.Second

// toldWatch keeps the latest status of every ingest node, from a watch of
// the nodes store, so every site page can show what trackers and widgets
// are told without reading the bucket per update.
type toldWatch struct {
	stopWatch func() error

	mu    sync.Mutex
	nodes map[string]store.NodeStatus // by id
}

// watchTold starts watching the ingest nodes' statuses.
func watchTold(ctx context.Context, nodes *store.Nodes) (*toldWatch, error) {
	t := &toldWatch{nodes: make(map[string]store.NodeStatus)}
	stop, err := nodes.WatchIngest(ctx, func(id string, st store.NodeStatus, gone bool) {
		t.mu.Lock()
		defer t.mu.Unlock()
		if gone {
			delete(t.nodes, id)
		} else {
			t.nodes[id] = st
		}
	})
	if err != nil {
		return nil, err
	}
	t.stopWatch = stop
	return t, nil
}

// current returns the ingest nodes that reported within toldFresh of now,
// by id.
func (t *toldWatch) current(now time.Time) []store.NodeStatus {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []store.NodeStatus
	for _, st := range t.nodes {
		if now.Sub(time.UnixMilli(st.Updated)) <= toldFresh {
			out = append(out, st)
		}
	}
	slices.SortFunc(out, func(a, b store.NodeStatus) int { return strings.Compare(a.ID, b.ID) })
	return out
}

func (t *toldWatch) stop() error { return t.stopWatch() }
