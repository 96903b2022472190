package natsutil

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestEmbeddedBeyondLoopbackNeedsAToken: the embedded server refuses to
// listen beyond loopback without a token, and with one refuses clients
// that do not give it, in-process ones included.
func TestEmbeddedBeyondLoopbackNeedsAToken(t *testing.T) {
	for _, listen := range []string{"0.0.0.0:0", ":0", "192.0.2.1:0"} {
		if ns, err := RunEmbedded(EmbeddedOptions{StoreDir: t.TempDir(), Listen: listen}); err == nil {
			ns.Shutdown()
			t.Errorf("listening on %s without a token: started", listen)
		} else if !strings.Contains(err.Error(), "need a token") {
			t.Errorf("listening on %s without a token: %v", listen, err)
		}
	}
	ns, err := RunEmbedded(EmbeddedOptions{StoreDir: t.TempDir(), Listen: "0.0.0.0:0", Token: "s3cret-token"})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	log := slog.New(slog.DiscardHandler)
	if nc, err := nats.Connect(ns.ClientURL(), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Error("a client without the token connected")
	}
	if nc, err := nats.Connect(ns.ClientURL(), nats.Token("wrong"), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Error("a client with a wrong token connected")
	}
	for _, tc := range []struct {
		name string
		url  string
		in   bool
	}{{"over TCP", ns.ClientURL(), false}, {"in-process", "", true}} {
		server := ns
		if !tc.in {
			server = nil
		}
		nc, err := Connect(tc.url, server, "test", "s3cret-token", log)
		if err != nil {
			t.Fatalf("%s with the token: %v", tc.name, err)
		}
		nc.Close()
	}
	// Loopback needs none.
	local, err := RunEmbedded(EmbeddedOptions{StoreDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	local.Shutdown()
}

// TestAutoReplicasOnOneServer: a server outside a cluster gives one
// replica (the cluster case is TestClusterFailuresKeepExactCounts in
// cmd/pulse, on three real servers).
func TestAutoReplicasOnOneServer(t *testing.T) {
	ns, err := RunEmbedded(EmbeddedOptions{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	nc, err := Connect("", ns, "test", "", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if n, err := AutoReplicas(context.Background(), nc, js); err != nil || n != 1 {
		t.Errorf("AutoReplicas = %d, %v; want 1", n, err)
	}
}
