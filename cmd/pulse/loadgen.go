package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/pulse-analytics/pulse/loadgen"
)

// runLoadgen runs `pulse loadgen` with args and prints the JSON report.
func runLoadgen(ctx context.Context, args []string, out io.Writer) error {
	var c loadgen.Config
	fs := flag.NewFlagSet("pulse loadgen", flag.ContinueOnError)
	fs.StringVar(&c.URL, "url", "http://127.0.0.1:8081", "ingest node to load (loopback only)")
	fs.StringVar(&c.Site, "site", "demo", "site the trackers send for")
	fs.IntVar(&c.Trackers, "trackers", 100, "number of trackers")
	fs.Float64Var(&c.Rate, "rate", 10, "events per second per tracker")
	fs.DurationVar(&c.Duration, "duration", 0, "how long to send after the ramp (default 10s, at most 10m)")
	fs.DurationVar(&c.Ramp, "ramp", 0, "how long to spread the trackers' starts over (default 1s)")
	fs.BoolVar(&c.Batched, "batched", false, "send the batched tracker protocol instead of classic frames")
	fs.DurationVar(&c.BatchEvery, "batch-every", 0, "batch interval of batched trackers (default 1s)")
	fs.IntVar(&c.Sources, "sources", 1, "loopback source addresses to spread connections over (127.0.0.1 to .N)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	r, err := loadgen.Run(ctx, c)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(out, r.JSON())
	return err
}
