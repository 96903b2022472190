package aggregator

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulse-analytics/pulse/event"
)

type metrics struct {
	events         *prometheus.CounterVec
	invalid        prometheus.Counter
	duplicates     prometheus.Counter
	snapshotErrors prometheus.Counter
	seq            prometheus.Gauge
	renewals       *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pulse_aggregator_events_total",
			Help: "Tracker events counted by the aggregator, by site.",
		}, []string{"site"}),
		invalid: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pulse_aggregator_invalid_messages_total",
			Help: "Stream messages skipped because they could not be decoded.",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pulse_aggregator_duplicate_batches_total",
			Help: "Tracker batches skipped because they were counted before (re-sent after a lost ack).",
		}),
		snapshotErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pulse_aggregator_snapshot_errors_total",
			Help: "Snapshots that could not be written (retried at the next tick).",
		}),
		seq: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pulse_aggregator_snapshot_sequence",
			Help: "Stream sequence covered by the last snapshot.",
		}),
		renewals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pulse_aggregator_consumer_renewals_total",
			Help: "Times the aggregator gave a stream's consumer up and started another (a NATS server lost, a missed heartbeat, a gap), by stream.",
		}, []string{"stream"}),
	}
	// The built-in site's series exists from the start, so that a scraper
	// sees the counter at 0 before the first event rather than no counter.
	m.events.WithLabelValues(event.DefaultSite)
	m.renewals.WithLabelValues(event.StreamActivity)
	for _, c := range []prometheus.Collector{m.events, m.invalid, m.duplicates, m.snapshotErrors, m.seq, m.renewals} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("aggregator metrics: %w", err)
		}
	}
	return m, nil
}
