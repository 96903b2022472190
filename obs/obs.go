// Package obs mounts the health, readiness and Prometheus endpoints of
// Pulse's listeners.
package obs

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// MountHealth adds /healthz and /readyz to mux. /healthz answers 200 while
// the process serves HTTP at all; /readyz answers 200 only while ready
// returns nil, and 503 with the reason otherwise, so a load balancer stops
// sending traffic to a part that cannot serve. Both say nothing else, so
// they are safe on a public listener.
func MountHealth(mux *http.ServeMux, ready func() error) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready: " + err.Error() + "\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
}

// MountMetrics adds /metrics to mux. The figures name every site and its
// traffic, so mount it only on a listener that is not public.
func MountMetrics(mux *http.ServeMux, gatherer prometheus.Gatherer) {
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
}
