package dashboard

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	sseClients prometheus.Gauge
	sseSkipped prometheus.Counter
	sseDropped prometheus.Counter
	sseRefused *prometheus.CounterVec
	logins     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		sseClients: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pulse_dashboard_sse_clients",
			Help: "Open SSE streams.",
		}),
		sseSkipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pulse_dashboard_sse_skipped_total",
			Help: "Updates a slow SSE client skipped because a newer one replaced them.",
		}),
		sseDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pulse_dashboard_sse_dropped_total",
			Help: "SSE clients dropped because a write failed or timed out.",
		}),
		sseRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pulse_dashboard_sse_refused_total",
			Help: "SSE streams refused for too many open, by status: 429 for one user's, 503 for the node's.",
		}, []string{"status"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pulse_dashboard_logins_total",
			Help: "Login attempts, by result.",
		}, []string{"result"}),
	}
	for _, c := range []prometheus.Collector{m.sseClients, m.sseSkipped, m.sseDropped, m.sseRefused, m.logins} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("dashboard metrics: %w", err)
		}
	}
	return m, nil
}
