package ingest

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulse-analytics/pulse/event"
)

type metrics struct {
	events      *prometheus.CounterVec
	rejected    *prometheus.CounterVec
	dropped     *prometheus.CounterVec
	connections prometheus.Gauge
	load        prometheus.Gauge
	level       prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pulse_ingest_events_total",
			Help: "Tracker events stored in JetStream, by site and kind.",
		}, []string{"site", "kind"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pulse_ingest_rejected_total",
			Help: "Connections and frames refused, by reason.",
		}, []string{"reason"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pulse_ingest_dropped_total",
			Help: "Events and presence messages accepted but not stored, by site and reason.",
		}, []string{"site", "reason"}),
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pulse_ingest_connections",
			Help: "Open tracker connections.",
		}),
		load: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pulse_ingest_load",
			Help: "Events accepted per second as a share of the node's capacity.",
		}),
		level: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pulse_ingest_load_level",
			Help: "Load level: trackers are told to sample and flush 2^level times slower.",
		}),
	}
	for _, c := range []prometheus.Collector{m.events, m.rejected, m.dropped, m.connections, m.load, m.level} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("ingest metrics: %w", err)
		}
	}
	return m, nil
}

// kindCounts counts events by kind.
type kindCounts [16]int

func (c *kindCounts) add(events []event.Event) {
	for i := range events {
		if k := int(events[i].Kind); k < len(c) {
			c[k]++
		}
	}
}

// countEvents adds stored events to the per-kind counters, one counter
// update per kind rather than per event.
func (m *metrics) countEvents(site string, byKind *kindCounts) {
	for k, n := range byKind {
		if n > 0 {
			m.events.WithLabelValues(site, event.Kind(k).String()).Add(float64(n))
		}
	}
}
