// Package natsutil starts an embedded NATS server, connects to NATS, and
// declares the streams Pulse uses (package store declares the buckets).
// Every part calls Ensure at start, so whichever part starts first creates
// them and the others find them.
package natsutil

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pulse-analytics/pulse/event"
)

// Stream limits of ACTIVITY and QUOTES. The streams are the replay logs
// behind the aggregator's snapshots, so it must outlive the longest window the
// aggregator rebuilds (24 h); a week and 1 GiB leave room for an aggregator
// that is down for a while without letting a flood fill the disk.
const (
	activityMaxAge   = 7 * 24 * time.Hour
	activityMaxBytes = 1 << 30
	// Trackers re-send unacked batches after a reconnect with a backoff
	// capped well below this, so a re-send always falls inside the window.
	activityDuplicates = 5 * time.Minute
)

// EmbeddedOptions configure an embedded NATS server.
type EmbeddedOptions struct {
	// StoreDir is where JetStream keeps its files. Required.
	StoreDir string
	// Listen is a host:port to accept NATS clients on; empty means
	// in-process connections only. Beyond loopback it needs a Token.
	Listen string
	// Token, if set, is the token every client must give, in-process
	// ones too (nats://TOKEN@host:port).
	Token string
	// Logger receives the server's notices and errors. Default: discard.
	Logger *slog.Logger
}

// IsLoopback reports whether host (of a listen address) is reachable from
// this machine only: a loopback address or "localhost". An empty host
// listens on every interface.
func IsLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// RunEmbedded starts a NATS server with JetStream in this process and waits
// until it accepts connections.
func RunEmbedded(o EmbeddedOptions) (*server.Server, error) {
	if o.StoreDir == "" {
		return nil, errors.New("embedded nats: store dir is required")
	}
	opts := &server.Options{
		ServerName: "pulse-embedded",
		JetStream:  true,
		StoreDir:   o.StoreDir,
		NoSigs:     true,
		NoLog:      o.Logger == nil,
		// DontListen also keeps cluster routes from starting, which is
		// right here: the embedded server is a single node.
		DontListen: o.Listen == "",
	}
	opts.Authorization = o.Token
	if o.Listen != "" {
		host, port, err := net.SplitHostPort(o.Listen)
		if err != nil {
			return nil, fmt.Errorf("embedded nats: listen address %q: %w", o.Listen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("embedded nats: listen port %q: %w", port, err)
		}
		if p == 0 {
			p = server.RANDOM_PORT
		}
		if o.Token == "" && !IsLoopback(host) {
			return nil, fmt.Errorf("embedded nats: clients on %s (beyond loopback) need a token", o.Listen)
		}
		opts.Host, opts.Port = host, p
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	if o.Logger != nil {
		ns.SetLoggerV2(slogAdapter{o.Logger.With("component", "nats")}, false, false, false)
	}
	go ns.Start()
	// JetStream recovers its store before the server is ready, which on a
	// large store can take a while.
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("embedded nats: not ready after 30s")
	}
	return ns, nil
}

// Connect connects to url, or in-process to ns when ns is not nil, with
// token if it is set (a URL may carry credentials of its own). It
// reconnects forever: a part outlives a NATS restart.
func Connect(url string, ns *server.Server, name, token string, logger *slog.Logger) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				logger.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			logger.Info("nats reconnected", "url", c.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			logger.Error("nats async error", "subject", subject, "err", err)
		}),
	}
	if ns != nil {
		opts = append(opts, nats.InProcessServer(ns))
		url = ""
	}
	if token != "" {
		opts = append(opts, nats.Token(token))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats %q: %w", url, err)
	}
	return nc, nil
}

// Ensure creates the streams that are missing (the store package declares
// the buckets). It changes none that exist: a change of limits is an
// operator's decision. replicas gives the replication factor of what is
// created; it is asked only if something is missing (see Fixed and
// AutoReplicas).
func Ensure(ctx context.Context, js jetstream.JetStream, replicas Replicas, logger *slog.Logger) error {
	// Both streams replay into the aggregator's snapshots, so they share
	// the limits above.
	streams := map[string][]string{event.StreamActivity: event.ActivitySubjects, event.StreamQuotes: event.QuoteSubjects}
	for name, subjects := range streams {
		cfg := jetstream.StreamConfig{
			Name:       name,
			Subjects:   subjects,
			Storage:    jetstream.FileStorage,
			Retention:  jetstream.LimitsPolicy,
			MaxAge:     activityMaxAge,
			MaxBytes:   activityMaxBytes,
			Discard:    jetstream.DiscardOld,
			Duplicates: activityDuplicates,
		}
		err := Retry(ctx, logger, "stream "+name, func(ctx context.Context) error {
			// Declare only what is missing: every part calls Ensure at
			// start, and identical creates racing on a new cluster time out.
			if _, err := js.Stream(ctx, name); !errors.Is(err, jetstream.ErrStreamNotFound) {
				return err
			}
			n, err := replicas(ctx)
			if err != nil {
				return err
			}
			cfg.Replicas = n
			_, err = js.CreateStream(ctx, cfg)
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				return nil
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("ensure stream %s: %w", name, err)
		}
	}
	return nil
}

// ensureTimeout bounds how long a part waits at start for JetStream: a
// cluster that starts with it elects its leaders within seconds.
const ensureTimeout = time.Minute

// Retry calls fn until it succeeds or ensureTimeout passes. Parts start
// together with the NATS cluster, and several may declare the same stream
// at once; both make the first calls fail for a moment.
func Retry(ctx context.Context, logger *slog.Logger, what string, fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, ensureTimeout)
	defer cancel()
	wait := 100 * time.Millisecond
	for {
		callCtx, callCancel := context.WithTimeout(ctx, 3*time.Second)
		err := fn(callCtx)
		callCancel()
		if err == nil {
			return nil
		}
		logger.Warn("waiting for JetStream", "declaring", what, "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// Ready reports nil when nc is connected.
func Ready(nc *nats.Conn) error {
	if nc == nil {
		return errors.New("nats: not connected yet")
	}
	if s := nc.Status(); s != nats.CONNECTED {
		return fmt.Errorf("nats: %s", s)
	}
	return nil
}

// slogAdapter passes the embedded server's log lines to slog.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Noticef(format string, v ...any) { a.l.Debug(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Warnf(format string, v ...any)   { a.l.Warn(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Fatalf(format string, v ...any)  { a.l.Error(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Errorf(format string, v ...any)  { a.l.Error(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Debugf(format string, v ...any)  { a.l.Debug(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Tracef(format string, v ...any)  {}

// The JetStream API's error codes for a replication factor the servers
// cannot give: more replicas than JetStream servers in the cluster, and
// more than one on a server that is not in a cluster.
const (
	errCodeInsufficientResources = 10023
	errCodeReplicasNotSupported  = 10074
)

// Replicas chooses the replication factor of new streams and buckets.
type Replicas func(context.Context) (int, error)

// Once is r asked at most once: what it chose is the answer after that,
// so streams and buckets created at one start have the same factor.
func Once(r Replicas, logger *slog.Logger) Replicas {
	var mu sync.Mutex
	chosen := 0
	return func(ctx context.Context) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		if chosen == 0 {
			n, err := r(ctx)
			if err != nil {
				return 0, err
			}
			chosen = max(n, 1)
			logger.Info("replicas of new streams and buckets", "replicas", chosen)
		}
		return chosen, nil
	}
}

// Fixed is n replicas.
func Fixed(n int) Replicas {
	return func(context.Context) (int, error) { return n, nil }
}

// Auto is AutoReplicas for nc.
func Auto(nc *nats.Conn, js jetstream.JetStream) Replicas {
	return func(ctx context.Context) (int, error) { return AutoReplicas(ctx, nc, js) }
}

// MaxAutoReplicas is the most replicas AutoReplicas chooses: three copies
// survive the loss of one server with a quorum left.
const MaxAutoReplicas = 3

// AutoReplicas finds how many replicas the JetStream servers behind js can
// give a stream, up to MaxAutoReplicas: it creates a small probe stream
// with 3, then 2, and deletes it. A server that is not in a cluster
// gives 1. A cluster that is still forming may not know all its servers
// yet, so each count is tried for probeWait before a smaller one.
func AutoReplicas(ctx context.Context, nc *nats.Conn, js jetstream.JetStream) (int, error) {
	if nc.ConnectedClusterName() == "" {
		return 1, nil
	}
	for n := MaxAutoReplicas; n > 1; n-- {
		ok, err := probeReplicas(ctx, js, n)
		if err != nil {
			return 0, err
		}
		if ok {
			return n, nil
		}
	}
	return 1, nil
}

// probeWait is how long AutoReplicas tries a replica count.
// It fits in one of Ensure's tries.
const probeWait = 2 * time.Second

// probeReplicas reports whether a stream with n replicas can be made.
func probeReplicas(ctx context.Context, js jetstream.JetStream, n int) (bool, error) {
	deadline := time.Now().Add(probeWait)
	for {
		var id [8]byte
		_, _ = rand.Read(id[:])
		name := "PULSE_REPLICAS_PROBE_" + hex.EncodeToString(id[:])
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{
			Name: name, Subjects: []string{"_pulse.probe." + name}, Storage: jetstream.MemoryStorage, Replicas: n, MaxMsgs: 1,
		})
		if err == nil {
			if err := js.DeleteStream(ctx, name); err != nil {
				return false, fmt.Errorf("delete replica probe %s: %w", name, err)
			}
			return true, nil
		}
		var apiErr *jetstream.APIError
		if !errors.As(err, &apiErr) || apiErr.ErrorCode != errCodeInsufficientResources && apiErr.ErrorCode != errCodeReplicasNotSupported {
			return false, fmt.Errorf("replica probe with %d replicas: %w", n, err)
		}
		if apiErr.ErrorCode == errCodeReplicasNotSupported || time.Now().After(deadline) {
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}
