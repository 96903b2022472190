// Command floor is the bare receive floor of issue 19's peer comparison:
// a WebSocket server on nbio (epoll, no goroutine per connection) that
// only reads frames and counts them. Nothing is decoded, stored or
// aggregated, so its CPU per frame is the least any server on this machine
// spends to take a tracker's frame off the wire. It serves the count as
// floor_frames_total in Prometheus text, which the peers' loadgen reads
// (-metrics, -counter), and listens on loopback only.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lesismal/nbio/nbhttp"
	"github.com/lesismal/nbio/nbhttp/websocket"
)

func main() {
	wsAddr := flag.String("addr", "127.0.0.1:8081", "WebSocket listen address (loopback only)")
	metricsAddr := flag.String("metrics-addr", "127.0.0.1:2113", "Prometheus text listen address (loopback only)")
	pool := flag.Bool("pool", false, "run the message callbacks on nbio's goroutine pool (its default) instead of the poller's goroutine")
	flag.Parse()
	for _, a := range []string{*wsAddr, *metricsAddr} {
		if err := loopbackOnly(a); err != nil {
			log.Fatal(err)
		}
	}
	var frames, conns atomic.Int64
	up := websocket.NewUpgrader()
	up.CheckOrigin = func(*http.Request) bool { return true }
	up.Subprotocols = []string{"json"}
	up.OnMessage(func(*websocket.Conn, websocket.MessageType, []byte) { frames.Add(1) })
	up.OnClose(func(*websocket.Conn, error) { conns.Add(-1) })
	conf := nbhttp.Config{
		Network: "tcp",
		Addrs:   []string{*wsAddr},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, err := up.Upgrade(w, r, nil); err == nil {
				conns.Add(1)
			}
		}),
	}
	if !*pool {
		// Counting a frame is cheaper than handing it to another
		// goroutine: the floor counts it where it was read.
		conf.ServerExecutor = func(f func()) { f() }
	}
	engine := nbhttp.NewEngine(conf)
	if err := engine.Start(); err != nil {
		log.Fatalf("floor: %v", err)
	}
	metrics := &http.Server{Addr: *metricsAddr, ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "# TYPE floor_frames_total counter\nfloor_frames_total %d\n# TYPE floor_connections gauge\nfloor_connections %d\n", frames.Load(), conns.Load())
	})}
	go func() {
		if err := metrics.ListenAndServe(); err != http.ErrServerClosed {
			log.Fatalf("floor metrics: %v", err)
		}
	}()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = metrics.Shutdown(shut)
	_ = engine.Shutdown(shut)
}

// loopbackOnly refuses an address beyond this machine: the floor is a
// benchmark peer and takes load from loopback only.
func loopbackOnly(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("address %q: loopback only", addr)
	}
	return nil
}
