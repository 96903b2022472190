package dashboard

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/a-h/templ"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pulse-analytics/pulse/event"
	"github.com/pulse-analytics/pulse/store"
)

// systemView is what the System page shows: the running parts, and
// JetStream's own figures.
type systemView struct {
	Nodes     []store.NodeStatus
	Account   *jetstream.AccountInfo
	Streams   []*jetstream.StreamInfo
	Consumers []*jetstream.ConsumerInfo
	Updated   time.Time
}

// systemRefresh is how often the System page's stream sends new figures:
// parts report every 5 s, so faster shows nothing new.
const systemRefresh = 2 * time.Second

// system gathers the System page's figures.
func (s *Server) system(ctx context.Context) (systemView, error) {
	v := systemView{Updated: time.Now()}
	js := s.cfg.JetStream
	var errs []error
	var err error
	v.Nodes, err = s.cfg.Nodes.Statuses(ctx)
	errs = append(errs, err)
	v.Account, err = js.AccountInfo(ctx)
	errs = append(errs, err)
	for _, name := range []string{event.StreamActivity, event.StreamQuotes} {
		st, err := js.Stream(ctx, name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		info, err := st.Info(ctx)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		v.Streams = append(v.Streams, info)
		for ci := range st.ListConsumers(ctx).Info() {
			v.Consumers = append(v.Consumers, ci)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return v, fmt.Errorf("system figures: %w", err)
	}
	return v, nil
}

func (s *Server) serveSystem(w http.ResponseWriter, r *http.Request) {
	v, err := s.system(r.Context())
	if err != nil {
		s.log.Warn("system page", "err", err)
	}
	s.render(w, r, http.StatusOK, systemPage(meFrom(r.Context()), v))
}

// serveSystemSSE sends the System page's figures every systemRefresh.
// They are gathered per stream, as few admins watch this page.
func (s *Server) serveSystemSSE(w http.ResponseWriter, r *http.Request) {
	write := startSSE(w)
	s.metrics.sseClients.Inc()
	defer s.metrics.sseClients.Dec()
	t := time.NewTicker(systemRefresh)
	defer t.Stop()
	for version := uint64(time.Now().UnixMilli()); ; version++ {
		v, err := s.system(r.Context())
		if err != nil {
			s.log.Debug("system figures", "err", err)
		}
		u, err := encodeFrame(r.Context(), "system", version, panelUpdate{Panel: map[string]int64{"version": int64(version), "updated": v.Updated.UnixMilli()}},
			map[string]templ.Component{"system": systemFigures(v)})
		if err != nil || !write(u.frame) {
			return
		}
		select {
		case <-t.C:
		case <-s.hub.closed:
			write([]byte("retry: 500\n\n"))
			return
		case <-r.Context().Done():
			return
		}
	}
}

// figure formats a reported figure.
func figure(v float64) string {
	if v == float64(int64(v)) {
		return count(uint64(max(v, 0)))
	}
	return fmt.Sprintf("%.1f", v)
}

// bytesOf formats a byte count.
func bytesOf(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// callInColumn is one bucket of an ingest node's callIn distribution:
// its figure's key and its column's label.
type callInColumn struct{ key, label string }

// callInColumns are the columns of the callIn distribution, bucketed by
// event.CallInBuckets, then the stops.
func callInColumns() []callInColumn {
	cols := make([]callInColumn, 0, len(event.CallInBuckets)+2)
	for i := range len(event.CallInBuckets) + 1 {
		label := "> " + strconv.FormatFloat(event.CallInBuckets[len(event.CallInBuckets)-1], 'f', -1, 64) + " s"
		if i < len(event.CallInBuckets) {
			label = "≤ " + strconv.FormatFloat(event.CallInBuckets[i], 'f', -1, 64) + " s"
		}
		cols = append(cols, callInColumn{event.CallInFigure(i), label})
	}
	return append(cols, callInColumn{"callin_stop", "stop"})
}

// ingestNodes are the ingest nodes among nodes.
func ingestNodes(nodes []store.NodeStatus) []store.NodeStatus {
	var out []store.NodeStatus
	for _, n := range nodes {
		if n.Kind == "ingest" {
			out = append(out, n)
		}
	}
	return out
}

// sortedFigures are the keys of a part's figures in order, without those
// the table of what clients are told shows.
func sortedFigures(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		if k == "sample_ms" || k == "flush_ms" || strings.HasPrefix(k, "callin_") {
			continue
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
