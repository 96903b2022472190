package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/pulse-analytics/pulse/loadgen"
)

// runLoadgen runs `pulse loadgen` with args and prints the JSON report;
// getenv supplies the default dashboard password.
func runLoadgen(ctx context.Context, args []string, getenv func(string) string, out io.Writer) error {
	var c loadgen.Config
	fs := flag.NewFlagSet("pulse loadgen", flag.ContinueOnError)
	fs.StringVar(&c.URL, "url", "http://127.0.0.1:8081", "ingest node to load (loopback only)")
	fs.StringVar(&c.Site, "site", "demo", "site the trackers send for")
	fs.IntVar(&c.Sites, "sites", 1, "spread the trackers over N sites, SITE-0 to SITE-(N-1), registered at the node (-sites-file); the count is read at -metrics")
	fs.IntVar(&c.Trackers, "trackers", 100, "number of trackers")
	fs.Float64Var(&c.Rate, "rate", 10, "events per second per tracker")
	fs.DurationVar(&c.Duration, "duration", 0, "how long to send after the ramp (default 10s, at most 10m)")
	fs.DurationVar(&c.Ramp, "ramp", 0, "how long to spread the trackers' starts over (default 1s)")
	fs.BoolVar(&c.Batched, "batched", false, "send the batched tracker protocol instead of classic frames")
	fs.DurationVar(&c.BatchEvery, "batch-every", 0, "batch interval of batched trackers (default 1s)")
	fs.StringVar(&c.Target, "target", loadgen.TargetPulse, "server loaded with -batched frames: pulse, floor (bench/floor, counted at -metrics) or centrifugo (publish commands to track:SITE)")
	fs.IntVar(&c.Sources, "sources", 1, "loopback source addresses to spread connections over (127.0.0.1 to .N)")
	fs.StringVar(&c.Dashboard, "dashboard", "", "dashboard to count at and stream from, like http://127.0.0.1:2112 (loopback only; empty: none)")
	fs.StringVar(&c.User, "user", "admin", "dashboard user")
	fs.StringVar(&c.Password, "password", "", "dashboard password (default $PULSE_ADMIN_PASSWORD)")
	fs.IntVar(&c.Consumers, "consumers", 1, "SSE consumers of the site's dashboard stream, measuring delivery latency")
	fs.DurationVar(&c.Settle, "settle", 0, "how long to wait after sending for the count to catch up, while it moves (default 10s, at most 1m)")
	fs.IntVar(&c.ServerPID, "server-pid", 0, "server process to report CPU time and memory of (Linux)")
	widgets := fs.Int("widgets", 0, "run N quote widgets polling /v1/quote and obeying callIn instead of trackers")
	symbols := fs.String("symbols", "IBM,AAPL,MSFT", "symbols the widgets poll, comma-separated")
	metrics := fs.String("metrics", "http://127.0.0.1:2113", "the node's metrics listener, where widgets read its upstream fetches and -sites runs their count (loopback only)")
	hostile := fs.Bool("hostile", false, "hostile load: -trackers good trackers (default 1000, -rate default 20) counted exactly at -dashboard while ping floods, half-sent frames, path floods, SSE floods and silent connections from one address run")
	floodSite := fs.String("flood-site", "flood", "with -hostile: the registered site the path flooders send to")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.Password == "" {
		c.Password = getenv("PULSE_ADMIN_PASSWORD")
	}
	if *hostile {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		h := loadgen.HostileConfig{
			URL: c.URL, Dashboard: c.Dashboard, User: c.User, Password: c.Password, MetricsURL: *metrics,
			Site: c.Site, FloodSite: *floodSite, Duration: c.Duration, Ramp: c.Ramp, Settle: c.Settle, ServerPID: c.ServerPID,
		}
		if set["trackers"] {
			h.Trackers = c.Trackers
		}
		if set["rate"] {
			h.Rate = c.Rate
		}
		r, err := loadgen.RunHostile(ctx, h)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(out, r.JSON())
		return err
	}
	if *widgets > 0 {
		r, err := loadgen.RunWidgets(ctx, loadgen.WidgetConfig{
			URL: c.URL, MetricsURL: *metrics, Widgets: *widgets, Symbols: strings.Split(*symbols, ","),
			Duration: c.Duration, Ramp: c.Ramp, Sources: c.Sources,
		})
		if err != nil {
			return err
		}
		b, _ := json.MarshalIndent(r, "", "  ")
		_, err = fmt.Fprintln(out, string(b))
		return err
	}
	c.MetricsURL = *metrics
	r, err := loadgen.Run(ctx, c)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(out, r.JSON())
	return err
}
