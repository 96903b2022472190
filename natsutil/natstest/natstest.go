// Package natstest starts an embedded NATS server with JetStream for tests
// and stops it when the test ends.
package natstest

import (
	"context"
	"log/slog"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pulse-analytics/pulse/natsutil"
	"github.com/pulse-analytics/pulse/store"
)

// Server is a running test server with a connection and the Pulse streams
// and buckets in place.
type Server struct {
	NS     *server.Server
	NC     *nats.Conn
	JS     jetstream.JetStream
	Stores *store.Stores
}

// URL is the client URL of the server.
func (s *Server) URL() string { return s.NS.ClientURL() }

// Run starts a NATS server listening on a random loopback port, with its
// store in a temporary directory, connects to it, declares the streams and buckets, and opens the stores.
// Everything is stopped when t ends.
func Run(t testing.TB) *Server {
	t.Helper()
	ns, err := natsutil.RunEmbedded(natsutil.EmbeddedOptions{StoreDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("run nats: %v", err)
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	nc, err := natsutil.Connect(ns.ClientURL(), nil, "test", "", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	ctx, log := context.Background(), slog.New(slog.DiscardHandler)
	if err := natsutil.Ensure(ctx, js, natsutil.Fixed(1), log); err != nil {
		t.Fatalf("ensure streams: %v", err)
	}
	if err := store.Ensure(ctx, js, natsutil.Fixed(1), log); err != nil {
		t.Fatalf("ensure buckets: %v", err)
	}
	stores, err := store.Open(ctx, js)
	if err != nil {
		t.Fatalf("open stores: %v", err)
	}
	return &Server{NS: ns, NC: nc, JS: js, Stores: stores}
}
