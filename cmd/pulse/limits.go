package main

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pulse-analytics/pulse/clientaddr"
	"github.com/pulse-analytics/pulse/connlimit"
)

// defaultMaxConnsPerAddr is one client address's share of the public
// listeners' connections: as many as the trackers it may hold
// (ingest.Config.MaxConnsPerIP), for its handshakes, quote polls and
// dashboard requests, while the trackers count in all only.
const defaultMaxConnsPerAddr = 1000

// connLimiter bounds the connections of this process's public listeners
// (connlimit): Config.MaxConns in all, by default the open-file limit
// less what NATS, JetStream's files, the metrics listener and upstream
// fetches need, and Config.MaxConnsPerAddr per client address, the
// trusted proxies exempt. The ingest node's trackers count in all once
// its poller holds them.
func (m *Main) connLimiter(clients *clientaddr.Resolver, reg prometheus.Registerer) (*connlimit.Limiter, error) {
	maxConns := m.Config.MaxConns
	if maxConns == 0 {
		maxConns = maxConnsFor(openFileLimit())
	}
	perAddr := m.Config.MaxConnsPerAddr
	if perAddr == 0 {
		perAddr = defaultMaxConnsPerAddr
	}
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pulse_connections_refused_total",
		Help: "Connections the public listeners closed as soon as they were accepted, by reason: full (the process's limit) or per_addr (one client address's).",
	}, []string{"reason"})
	if err := reg.Register(refused); err != nil {
		return nil, fmt.Errorf("register connection metrics: %w", err)
	}
	return connlimit.New(connlimit.Config{
		Max: maxConns, MaxPerAddr: perAddr, Exempt: clients.Trusts,
		Held: func() int {
			if m.ingest == nil {
				return 0
			}
			return m.ingest.Conns()
		},
		Refused: func(reason string) { refused.WithLabelValues(reason).Inc() },
	})
}

// maxConnsFor is the default limit of connections under an open-file
// limit: all but a reserve of 512 descriptors (a quarter of a small
// limit) for what is not a client's connection.
func maxConnsFor(fileLimit int) int {
	if fileLimit <= 0 {
		return 10_000
	}
	return fileLimit - min(512, fileLimit/4)
}
