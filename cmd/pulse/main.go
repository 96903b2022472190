// Command pulse runs Pulse: everything in one process on an embedded NATS
// server (the default), or one part (ingest, aggregator, dashboard) against
// a NATS URL. This package parses flags and environment, wires the parts and
// handles signals; the parts hold the logic.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	_ "time/tzdata" // market hours in any time zone, on any machine

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/pulse-analytics/pulse/aggregator"
	"github.com/pulse-analytics/pulse/clientaddr"
	"github.com/pulse-analytics/pulse/connlimit"
	"github.com/pulse-analytics/pulse/dashboard"
	"github.com/pulse-analytics/pulse/event"
	"github.com/pulse-analytics/pulse/ingest"
	"github.com/pulse-analytics/pulse/ingest/netpoll"
	"github.com/pulse-analytics/pulse/natsutil"
	"github.com/pulse-analytics/pulse/obs"
	"github.com/pulse-analytics/pulse/quotes"
	"github.com/pulse-analytics/pulse/store"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) > 1 && os.Args[1] == "loadgen" {
		if err := runLoadgen(ctx, os.Args[2:], os.Getenv, os.Stdout); err != nil && !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "pulse loadgen:", err)
			os.Exit(2)
		}
		return
	}
	m := NewMain()
	if err := m.ParseFlags(os.Args[1:], os.Getenv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "pulse:", err)
		os.Exit(2)
	}
	if percent, ok := gcPercentFor(m.Config.Mode, os.Getenv); ok {
		debug.SetGCPercent(percent)
	}
	if err := m.Run(ctx); err != nil {
		m.Logger.Error("pulse failed to start", "err", err)
		_ = m.Close()
		os.Exit(1)
	}
	<-ctx.Done()
	stop()
	m.Logger.Info("shutting down")
	if err := m.Close(); err != nil {
		m.Logger.Error("shutdown", "err", err)
		os.Exit(1)
	}
}

// Modes of the pulse command.
const (
	ModeAll        = "all"
	ModeIngest     = "ingest"
	ModeAggregator = "aggregator"
	ModeDashboard  = "dashboard"
)

// Config is every setting of the command; each has a flag and a PULSE_*
// environment variable.
type Config struct {
	Mode          string
	IngestAddr    string
	DashboardAddr string
	MetricsAddr   string
	DataDir       string
	NATSURL       string
	NATSListen    string
	// NATSToken is the token of NATS clients: the embedded server's
	// (required beyond loopback; generated if not given), or the one a
	// part gives the -nats servers.
	NATSToken     string
	Replicas      int
	AdminPassword string
	// TrustedProxies are the proxies (addresses and prefixes,
	// comma-separated) whose X-Forwarded-For names the client, for the
	// limits kept per client address.
	TrustedProxies string
	// ResetAdminPassword gives the admin AdminPassword at this start,
	// even if the account exists (a forgotten password).
	ResetAdminPassword bool
	APIToken           string
	SitesFile          string
	// PublicIngestURL is where browsers reach the ingest nodes, for the
	// snippets the dashboard shows.
	PublicIngestURL string
	// IngestCapacity is the events per second an ingest node takes before
	// it slows trackers down.
	IngestCapacity int
	// IngestPoller is how an ingest node reads connections: io_uring,
	// epoll or goroutines (default: the best the system allows).
	IngestPoller string
	// IngestReusePort lets several ingest processes on one machine listen
	// on IngestAddr together (SO_REUSEPORT, Linux): the kernel spreads new
	// connections over them. One process's open-file limit then no longer
	// bounds the machine's trackers, and a node can be replaced without a
	// moment when none listens.
	IngestReusePort bool
	// MaxConns bounds the connections this process's public listeners
	// (ingest, dashboard) hold open, trackers included (0: the open-file
	// limit less a reserve); MaxConnsPerAddr those of one client address
	// before they become trackers (0: 1,000). See connLimiter.
	MaxConns, MaxConnsPerAddr int
	// IngestConnRate is the events per second one tracker connection may
	// send.
	IngestConnRate int
	// IngestAckInterval is the least time between two acks to a tracker
	// (0: ingest's default, 10 s).
	IngestAckInterval time.Duration
	// SnapshotEvery is how often the aggregator writes the snapshots of
	// changed sites (0: the aggregator's default, 10 s).
	SnapshotEvery time.Duration
	// LiveEvery is the least time between two rounds of the
	// aggregator's live panels (0: its default, 100 ms; negative: never).
	LiveEvery time.Duration
	// Quote source settings.
	QuoteSource          string
	QuoteSeed            int
	QuoteInterval        time.Duration
	QuoteReplayFile      string
	QuoteSymbols         string
	QuoteBudgetPerMinute int
	QuoteBudgetPerDay    int
	MarketHours          string
	AlphaVantageKey      string
	AlphaVantageURL      string
	// AggregatorSlice is "i/n": this aggregator owns the activity
	// partitions p with p % n == i.
	AggregatorSlice string
	LogLevel        string
	// DebugAddr, when set, serves net/http/pprof there. It exposes
	// internals, so it is off by default and meant for loopback.
	DebugAddr string
}

// Main is one run of the command. Tests build it directly, with a Config,
// to start the system in-process on random ports.
type Main struct {
	Config Config
	Logger *slog.Logger
	// LogOutput is where logs go. Default os.Stderr.
	LogOutput io.Writer

	// URLs of the listeners, set by Run.
	IngestURL, DashboardURL, MetricsURL string

	ns         *server.Server
	nc         *nats.Conn
	ingest     *ingest.Server
	sites      *store.SiteRegistry
	dash       *dashboard.Server
	aggStop    context.CancelFunc
	quotesStop context.CancelFunc
	quotesDone chan struct{}
	// status reports of the parts, stopped by Close.
	statusStop context.CancelFunc
	statusDone sync.WaitGroup
	aggDone    chan error
	servers    []*http.Server

	closeOnce sync.Once
	closeErr  error
}

// NewMain returns a Main with the default configuration.
func NewMain() *Main {
	return &Main{Config: Config{
		Mode:            ModeAll,
		IngestAddr:      ":8081",
		DashboardAddr:   ":2112",
		MetricsAddr:     "127.0.0.1:2113",
		DataDir:         "./pulse-data",
		QuoteSource:     "simulated",
		QuoteSeed:       1,
		AggregatorSlice: "0/1",
		LogLevel:        "info",
	}, LogOutput: os.Stderr}
}

const usage = `Usage: pulse [all|ingest|aggregator|dashboard|loadgen] [flags]

  all         everything in one process on an embedded NATS server (default)
  ingest      an ingest node: tracker WebSockets, static files, demo page
  aggregator  the aggregator: turns the ACTIVITY stream into live figures
  dashboard   the admin dashboard
  loadgen     tracker load at an ingest node on loopback (pulse loadgen -h)

Every flag can also be set by the environment variable shown with it.

`

// ParseFlags reads the mode and flags from args, with defaults from the
// environment as read by getenv.
func (m *Main) ParseFlags(args []string, getenv func(string) string) error {
	c := &m.Config
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		c.Mode, args = args[0], args[1:]
	}
	switch c.Mode {
	case ModeAll, ModeIngest, ModeAggregator, ModeDashboard:
	default:
		return fmt.Errorf("unknown command %q (want all, ingest, aggregator or dashboard)", c.Mode)
	}
	fs := flag.NewFlagSet("pulse "+c.Mode, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	str := func(p *string, name, env, help string) {
		if v := getenv(env); v != "" {
			*p = v
		}
		fs.StringVar(p, name, *p, help+" ($"+env+")")
	}
	str(&c.IngestAddr, "ingest-addr", "PULSE_INGEST_ADDR", "ingest listen address")
	str(&c.DashboardAddr, "dashboard-addr", "PULSE_DASHBOARD_ADDR", "dashboard listen address")
	str(&c.IngestPoller, "ingest-poller", "PULSE_INGEST_POLLER", "how ingest reads connections: io_uring, epoll or goroutines (default: the best this system allows)")
	str(&c.DebugAddr, "debug-addr", "PULSE_DEBUG_ADDR", "listen address of the pprof profiler, like 127.0.0.1:6060 (empty: off)")
	str(&c.MetricsAddr, "metrics-addr", "PULSE_METRICS_ADDR", "listen address of /metrics, /healthz and /readyz of every part in this process; keep it off public interfaces")
	str(&c.DataDir, "data-dir", "PULSE_DATA_DIR", "data directory; the embedded NATS server stores JetStream under it")
	str(&c.NATSURL, "nats", "PULSE_NATS_URL", "NATS URL(s), comma-separated; empty embeds a NATS server (all-in-one only)")
	str(&c.NATSListen, "nats-listen", "PULSE_NATS_LISTEN", "address the embedded NATS server accepts clients on; empty for in-process only")
	str(&c.NATSToken, "nats-token", "PULSE_NATS_TOKEN", "token NATS clients give: the embedded server requires it when -nats-listen is beyond loopback (empty: generated and logged), parts give it to -nats")
	str(&c.AdminPassword, "admin-password", "PULSE_ADMIN_PASSWORD", "dashboard admin password at the first start (later starts keep the account's own); empty generates one and prints it once")
	c.ResetAdminPassword = getenv("PULSE_RESET_ADMIN_PASSWORD") == "1"
	c.IngestReusePort = getenv("PULSE_INGEST_REUSE_PORT") == "1"
	fs.BoolVar(&c.IngestReusePort, "ingest-reuse-port", c.IngestReusePort, "share -ingest-addr with other ingest processes on this machine, which the kernel spreads new connections over (Linux; $PULSE_INGEST_REUSE_PORT=1)")
	fs.BoolVar(&c.ResetAdminPassword, "reset-admin-password", c.ResetAdminPassword, "give the admin the -admin-password at this start, even if the account exists ($PULSE_RESET_ADMIN_PASSWORD=1)")
	str(&c.APIToken, "api-token", "PULSE_API_TOKEN", "bearer token accepted by the dashboard API")
	str(&c.SitesFile, "sites-file", "PULSE_SITES_FILE", `JSON file of sites to register: [{"key":"shop","name":"Shop","origins":["https://shop.example"]}]`)
	str(&c.PublicIngestURL, "public-ingest-url", "PULSE_PUBLIC_INGEST_URL", "URL browsers reach ingest nodes at, for the dashboard's snippets (all-in-one: the ingest listener)")
	str(&c.TrustedProxies, "trusted-proxies", "PULSE_TRUSTED_PROXIES", "proxies whose X-Forwarded-For names the client, comma-separated addresses or prefixes like 10.0.0.0/8 (empty: none; the peer is the client)")
	str(&c.LogLevel, "log-level", "PULSE_LOG_LEVEL", "debug, info, warn or error")
	num := func(p *int, name, env, help string) error {
		if v := getenv(env); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("%s: %w", env, err)
			}
			*p = n
		}
		fs.IntVar(p, name, *p, help+" ($"+env+")")
		return nil
	}
	dur := func(p *time.Duration, name, env, help string) error {
		if v := getenv(env); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				return fmt.Errorf("%s: %w", env, err)
			}
			*p = d
		}
		fs.DurationVar(p, name, *p, help+" ($"+env+")")
		return nil
	}
	str(&c.QuoteSource, "quote-source", "PULSE_QUOTE_SOURCE", "quote source: simulated, replay, alphavantage or off")
	str(&c.QuoteReplayFile, "quote-replay-file", "PULSE_QUOTE_REPLAY_FILE", "CSV (symbol,date,price) the replay source plays, like stocks.csv of vega-datasets")
	str(&c.QuoteSymbols, "quote-symbols", "PULSE_QUOTE_SYMBOLS", "comma-separated symbols to serve (required for alphavantage; default: the source's own)")
	str(&c.MarketHours, "market-hours", "PULSE_MARKET_HOURS", `trading hours, like "09:30-16:00 America/New_York", or "always"`)
	str(&c.AlphaVantageKey, "alphavantage-key", "PULSE_ALPHAVANTAGE_KEY", "Alpha Vantage API key")
	str(&c.AggregatorSlice, "aggregator-slice", "PULSE_AGGREGATOR_SLICE", `which partitions of the activity this aggregator owns, "i/n" (n aggregators share them; a second one with the same i stands by)`)
	str(&c.AlphaVantageURL, "alphavantage-url", "PULSE_ALPHAVANTAGE_URL", "Alpha Vantage base URL (default https://www.alphavantage.co)")
	if err := errors.Join(
		num(&c.Replicas, "replicas", "PULSE_REPLICAS", "replicas of new streams and buckets (0: as many JetStream servers as the cluster has, at most 3)"),
		num(&c.IngestCapacity, "ingest-capacity", "PULSE_INGEST_CAPACITY", "events per second an ingest node takes before telling trackers to slow down (0: 50000)"),
		num(&c.MaxConns, "max-conns", "PULSE_MAX_CONNS", "connections the public listeners hold open at once, trackers included; beyond, new ones are closed at accept and /readyz says 503 (0: the open-file limit less 512)"),
		num(&c.MaxConnsPerAddr, "max-conns-per-addr", "PULSE_MAX_CONNS_PER_ADDR", "connections one client address (an IPv6 /64) may hold open that are not yet trackers: handshakes, quote polls, dashboard requests; trusted proxies are exempt (0: 1000)"),
		num(&c.IngestConnRate, "ingest-conn-rate", "PULSE_INGEST_CONN_RATE", "events per second one tracker connection may send, with bursts of 10 s (0: 200)"),
		dur(&c.IngestAckInterval, "ingest-ack-interval", "PULSE_INGEST_ACK_INTERVAL", "least time between two acks to a tracker; acks are cumulative (0: 10s)"),
		dur(&c.LiveEvery, "live-every", "PULSE_LIVE_EVERY", "the least time between two rounds of live totals, sent as soon as totals move between the once-a-second panels (0: 100ms; negative: never)"),
		dur(&c.SnapshotEvery, "snapshot-every", "PULSE_SNAPSHOT_EVERY", "how often the aggregator writes changed sites' snapshots; a restart replays the stream since (0: 10s)"),
		num(&c.QuoteSeed, "quote-seed", "PULSE_QUOTE_SEED", "seed of the simulated source's prices"),
		dur(&c.QuoteInterval, "quote-interval", "PULSE_QUOTE_INTERVAL", "upstream refresh interval (0: 5s simulated and replay, 1m alphavantage)"),
		num(&c.QuoteBudgetPerMinute, "quote-budget-per-minute", "PULSE_QUOTE_BUDGET_PER_MINUTE", "upstream calls per minute for the whole cluster (0: no limit; alphavantage free tier: 5)"),
		num(&c.QuoteBudgetPerDay, "quote-budget-per-day", "PULSE_QUOTE_BUDGET_PER_DAY", "upstream calls per day for the whole cluster (0: no limit; alphavantage free tier: 25)"),
	); err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if c.Mode != ModeAll && c.NATSURL == "" {
		return fmt.Errorf("pulse %s needs a NATS URL (-nats or PULSE_NATS_URL)", c.Mode)
	}
	return nil
}

// ingestGCPercent is an ingest node's GOGC. Its memory is its
// connections, a few hundred live bytes each, and Go's default lets the
// heap grow to twice what is live before collecting: at 50, 10,000 held
// trackers cost 1.5 KB each instead of 2.0, with no CPU difference
// measured at 20,000 events/s (BENCHMARKS.md, section c).
const ingestGCPercent = 50

// gcPercentFor returns the GOGC a process of mode should run with, and
// whether to set it: an ingest node's, unless GOGC is set in the
// environment, which wins.
func gcPercentFor(mode string, getenv func(string) string) (int, bool) {
	if mode != ModeIngest || getenv("GOGC") != "" {
		return 0, false
	}
	return ingestGCPercent, true
}

// Run starts the parts of the configured mode and returns once they serve.
// Close stops them.
func (m *Main) Run(ctx context.Context) error {
	c := m.Config
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return fmt.Errorf("log level: %w", err)
	}
	if m.Logger == nil {
		m.Logger = slog.New(slog.NewTextHandler(m.LogOutput, &slog.HandlerOptions{Level: level}))
	}
	log := m.Logger
	clients, err := clientaddr.Parse(c.TrustedProxies)
	if err != nil {
		return err
	}

	if c.NATSURL == "" {
		storeDir := filepath.Join(c.DataDir, "nats")
		if host, _, err := net.SplitHostPort(c.NATSListen); err == nil && c.NATSToken == "" && !natsutil.IsLoopback(host) {
			c.NATSToken = randomToken()
			log.Warn("the embedded NATS server takes clients beyond loopback, so it needs a token; generated one for this run (set PULSE_NATS_TOKEN to keep one)",
				"token", c.NATSToken, "url", "nats://TOKEN@"+c.NATSListen)
		}
		ns, err := natsutil.RunEmbedded(natsutil.EmbeddedOptions{StoreDir: storeDir, Listen: c.NATSListen, Token: c.NATSToken, Logger: log})
		if err != nil {
			return err
		}
		m.ns = ns
		log.Info("embedded NATS with JetStream started", "store", storeDir, "clients", listenNote(c.NATSListen, ns))
	}
	nc, err := natsutil.Connect(c.NATSURL, m.ns, "pulse-"+c.Mode, c.NATSToken, log)
	if err != nil {
		return err
	}
	m.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	// Without -replicas, as many as the cluster has servers (at most 3),
	// found only if a stream or bucket is to be made.
	replicas := natsutil.Fixed(c.Replicas)
	if c.Replicas <= 0 {
		replicas = natsutil.Auto(nc, js)
	}
	replicas = natsutil.Once(replicas, log)
	if err := natsutil.Ensure(ctx, js, replicas, log); err != nil {
		return err
	}
	if err := store.Ensure(ctx, js, replicas, log); err != nil {
		return err
	}
	stores, err := store.Open(ctx, js)
	if err != nil {
		return err
	}
	if err := m.seedSites(ctx, stores.Sites); err != nil {
		return err
	}
	if c.DebugAddr != "" {
		url, err := m.serve(c.DebugAddr, listenOptions{}, debugHandler())
		if err != nil {
			return err
		}
		log.Info("profiler listening", "url", url+"/debug/pprof/")
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	natsReady := func() error { return natsutil.Ready(nc) }
	lim, err := m.connLimiter(clients, reg)
	if err != nil {
		return err
	}

	statusCtx, statusStop := context.WithCancel(context.Background())
	m.statusStop = statusStop
	report := func(kind, id string, fn func() map[string]float64) {
		m.statusDone.Go(func() { stores.Nodes.Report(statusCtx, kind, id, fn, log) })
	}

	// What every part of this process needs to be ready: the metrics
	// listener's /readyz answers for all of them.
	readies := []func() error{natsReady}
	all := c.Mode == ModeAll
	if all || c.Mode == ModeAggregator {
		var slice, slices int
		if _, err := fmt.Sscanf(c.AggregatorSlice, "%d/%d", &slice, &slices); err != nil {
			return fmt.Errorf("aggregator slice %q: want i/n, like 0/2: %w", c.AggregatorSlice, err)
		}
		agg, err := aggregator.New(aggregator.Config{
			JetStream: js, Notifier: nc, Snapshots: stores.Snapshots, Views: stores.Views, Nodes: stores.Nodes, Slice: slice, Slices: slices, SnapshotEvery: c.SnapshotEvery, LiveEvery: c.LiveEvery, Logger: log, Registerer: reg,
		})
		if err != nil {
			return err
		}
		aggCtx, stop := context.WithCancel(context.Background())
		m.aggStop, m.aggDone = stop, make(chan error, 1)
		report("aggregator", randomNodeID(), agg.Figures)
		go func() {
			// The aggregator outlives NATS hiccups: after a failed start
			// or run it starts again from its snapshot.
			for {
				err := agg.Run(aggCtx)
				if aggCtx.Err() != nil {
					m.aggDone <- err
					return
				}
				log.Error("aggregator stopped; starting again", "err", err)
				select {
				case <-aggCtx.Done():
				case <-time.After(time.Second):
				}
			}
		}()
		readies = append(readies, agg.Ready)
	}
	if all || c.Mode == ModeIngest {
		if m.sites, err = stores.Sites.Watch(ctx, log); err != nil {
			return err
		}
		nodeID := randomNodeID()
		poller, err := m.startQuotes(js, stores.Quotes, nodeID, reg)
		if err != nil {
			return err
		}
		cfg := ingest.Config{
			Publisher: js, Sites: m.sites, NodeID: nodeID, Capacity: c.IngestCapacity, MaxConnEventsPerSecond: c.IngestConnRate,
			AckInterval: c.IngestAckInterval,
			Poller:      netpoll.Mode(c.IngestPoller), ClientAddrs: clients,
			Ready:  func() error { return errors.Join(natsReady(), lim.Ready()) },
			Logger: log, Registerer: reg,
		}
		if poller != nil {
			cfg.Quotes = poller
		}
		in, err := ingest.New(cfg)
		if err != nil {
			return err
		}
		m.ingest = in
		report("ingest", nodeID, in.Figures)
		mux := http.NewServeMux()
		obs.MountHealth(mux, in.Ready)
		mux.Handle("/", in.Handler())
		readies = append(readies, in.Ready)
		if m.IngestURL, err = m.serve(c.IngestAddr, listenOptions{limit: lim, reusePort: c.IngestReusePort}, mux); err != nil {
			return err
		}
		log.Info("ingest node listening", "tracker", wsURL(m.IngestURL)+"/v1/track", "demo", m.IngestURL+"/demo")
	}
	if all || c.Mode == ModeDashboard {
		trackerURL := c.PublicIngestURL
		if trackerURL == "" {
			trackerURL = m.IngestURL
		}
		d, err := dashboard.New(dashboard.Config{
			JetStream: js, Subscriber: nc,
			Accounts: stores.Accounts, Sessions: stores.Sessions, Sites: stores.Sites, Views: stores.Views, Nodes: stores.Nodes, AdminPassword: c.AdminPassword, ResetAdminPassword: c.ResetAdminPassword, APIToken: c.APIToken, TrackerURL: trackerURL, ClientAddrs: clients,
			Ready: natsReady, Logger: log, Registerer: reg,
		})
		if err != nil {
			return err
		}
		if err := d.Start(ctx); err != nil {
			return err
		}
		m.dash = d
		report("dashboard", randomNodeID(), d.Figures)
		mux := http.NewServeMux()
		obs.MountHealth(mux, d.Ready)
		mux.Handle("/", d.Handler())
		readies = append(readies, d.Ready)
		if m.DashboardURL, err = m.serve(c.DashboardAddr, listenOptions{limit: lim}, mux); err != nil {
			return err
		}
		log.Info("dashboard listening: point a browser here", "url", m.DashboardURL+"/")
	}
	// Metrics name every site and its traffic (and, all-in-one, the
	// logins): they have a listener of their own, on loopback unless
	// configured otherwise, never the public ones.
	mux := http.NewServeMux()
	obs.MountHealth(mux, func() error {
		var errs []error
		for _, ready := range readies {
			errs = append(errs, ready())
		}
		return errors.Join(errs...)
	})
	obs.MountMetrics(mux, reg)
	if m.MetricsURL, err = m.serve(c.MetricsAddr, listenOptions{}, mux); err != nil {
		return err
	}
	log.Info("metrics listening", "url", m.MetricsURL+"/metrics")
	return nil
}

// quoteSource builds the configured quote source; nil when quotes are off.
func (m *Main) quoteSource() (quotes.Source, error) {
	c := m.Config
	var symbols []string
	for _, s := range strings.Split(c.QuoteSymbols, ",") {
		if s = strings.TrimSpace(strings.ToUpper(s)); s != "" {
			symbols = append(symbols, s)
		}
	}
	market, err := quotes.ParseMarket(c.MarketHours)
	if err != nil {
		return nil, err
	}
	switch c.QuoteSource {
	case "off":
		return nil, nil
	case "simulated":
		cfg := quotes.SimulatedConfig{Seed: uint64(c.QuoteSeed), Interval: c.QuoteInterval, Market: market}
		if len(symbols) > 0 {
			cfg.Symbols = make(map[string]float64)
			for _, s := range symbols {
				price, ok := quotes.DefaultUniverse[s]
				if !ok {
					price = 100
				}
				cfg.Symbols[s] = price
			}
		}
		return quotes.NewSimulated(cfg), nil
	case "replay":
		if c.QuoteReplayFile == "" {
			return nil, errors.New("the replay quote source needs -quote-replay-file")
		}
		return quotes.OpenReplay(c.QuoteReplayFile, quotes.ReplayConfig{Step: c.QuoteInterval})
	case "alphavantage":
		return quotes.NewAlphaVantage(quotes.AlphaVantageConfig{
			BaseURL: c.AlphaVantageURL, APIKey: c.AlphaVantageKey, Symbols: symbols, Interval: c.QuoteInterval,
		})
	default:
		return nil, fmt.Errorf("unknown quote source %q (want simulated, replay, alphavantage or off)", c.QuoteSource)
	}
}

// startQuotes starts the quote poller of an ingest node; nil when quotes
// are off.
func (m *Main) startQuotes(js jetstream.JetStream, kv quotes.KV, nodeID string, reg prometheus.Registerer) (*quotes.Poller, error) {
	src, err := m.quoteSource()
	if err != nil || src == nil {
		return nil, err
	}
	market, _ := quotes.ParseMarket(m.Config.MarketHours)
	p, err := quotes.NewPoller(quotes.PollerConfig{
		Source: src, KV: kv, Publisher: js, NodeID: nodeID, Market: market,
		BudgetPerMinute: m.Config.QuoteBudgetPerMinute, BudgetPerDay: m.Config.QuoteBudgetPerDay,
		Logger: m.Logger, Registerer: reg,
	})
	if err != nil {
		return nil, err
	}
	pctx, stop := context.WithCancel(context.Background())
	m.quotesStop, m.quotesDone = stop, make(chan struct{})
	go func() {
		defer close(m.quotesDone)
		if err := p.Run(pctx); err != nil {
			m.Logger.Error("quote poller stopped", "err", err)
		}
	}()
	m.Logger.Info("quote poller running", "source", src.Name(), "interval", src.Interval())
	return p, nil
}

// randomToken returns 32 hex digits from 128 random bits.
func randomToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func randomNodeID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// seedSites registers the built-in demo site unless it exists, then the
// sites of the sites file, which overwrite what the registry holds.
func (m *Main) seedSites(ctx context.Context, sites *store.Sites) error {
	demo := store.Site{Key: event.DefaultSite, Name: "Demo page", Origins: []string{}}
	if err := sites.Seed(ctx, []store.Site{demo}, false); err != nil {
		return err
	}
	if m.Config.SitesFile == "" {
		return nil
	}
	declared, err := store.LoadSitesFile(m.Config.SitesFile)
	if err != nil {
		return err
	}
	return sites.Seed(ctx, declared, true)
}

// debugHandler serves the pprof profiles.
func debugHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// listenOptions are how serve listens.
type listenOptions struct {
	// limit, if set, bounds the listener's connections: a public one's.
	limit *connlimit.Limiter
	// reusePort lets other processes listen on the address too
	// (setReusePort).
	reusePort bool
}

// serve listens on addr and serves h in the background; it returns the
// listener's URL.
func (m *Main) serve(addr string, opts listenOptions, h http.Handler) (string, error) {
	var lc net.ListenConfig
	if opts.reusePort {
		lc.Control = setReusePort
	}
	l, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return "", fmt.Errorf("listen %s: %w", addr, err)
	}
	if opts.limit != nil {
		l = opts.limit.Listener(l)
	}
	srv := &http.Server{
		Handler: h,
		// Headers must arrive promptly; bodies are small and SSE streams
		// are long, so there is no overall read or write timeout.
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(m.Logger.Handler(), slog.LevelWarn),
	}
	m.servers = append(m.servers, srv)
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.Logger.Error("http server", "addr", addr, "err", err)
		}
	}()
	return "http://" + displayAddr(l.Addr()), nil
}

// displayAddr names a listener the way a browser on this machine reaches it.
func displayAddr(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok || tcp.IP.IsUnspecified() {
		_, port, _ := net.SplitHostPort(a.String())
		return "localhost:" + port
	}
	return a.String()
}

func wsURL(httpURL string) string { return "ws" + strings.TrimPrefix(httpURL, "http") }

func listenNote(listen string, ns *server.Server) string {
	if listen == "" {
		return "in-process only"
	}
	return ns.ClientURL()
}

// shutdownTimeout bounds a graceful stop; orchestrators send SIGKILL after
// 30 s by default, so Pulse finishes well before.
const shutdownTimeout = 20 * time.Second

// Close stops the parts in the order that loses nothing: the dashboard's
// SSE streams first (told to retry, so that the HTTP servers, which then
// stop accepting, need not wait for them), then ingest (its trackers are
// told to reconnect elsewhere, and what it accepted is stored), the quote
// poller and the status reports, then the aggregator (it writes a last
// snapshot), and NATS last, flushed.
// Close may be called more than once; later calls return the first result.
func (m *Main) Close() error {
	m.closeOnce.Do(func() { m.closeErr = m.close() })
	return m.closeErr
}

func (m *Main) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	var errs []error
	if m.dash != nil {
		errs = append(errs, m.dash.Shutdown())
	}
	// Each server stops accepting and waits for plain requests and SSE
	// streams; hijacked WebSockets are ingest.Shutdown's.
	var servers sync.WaitGroup
	serverErrs := make([]error, len(m.servers))
	for i, srv := range m.servers {
		servers.Go(func() { serverErrs[i] = srv.Shutdown(ctx) })
	}
	if m.ingest != nil {
		errs = append(errs, m.ingest.Shutdown(ctx))
	}
	if m.quotesStop != nil {
		m.quotesStop()
		<-m.quotesDone
	}
	if m.statusStop != nil {
		m.statusStop()
		m.statusDone.Wait()
	}
	if m.aggStop != nil {
		m.aggStop()
		select {
		case err := <-m.aggDone:
			errs = append(errs, err)
		case <-ctx.Done():
			errs = append(errs, errors.New("aggregator did not stop in time"))
		}
	}
	servers.Wait()
	errs = append(errs, serverErrs...)
	if m.sites != nil {
		m.sites.Stop()
	}
	if m.nc != nil && m.nc.IsConnected() {
		if err := m.nc.FlushTimeout(5 * time.Second); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			errs = append(errs, fmt.Errorf("nats flush: %w", err))
		}
	}
	if m.nc != nil {
		m.nc.Close()
	}
	if m.ns != nil {
		m.ns.Shutdown()
		m.ns.WaitForShutdown()
	}
	return errors.Join(errs...)
}
