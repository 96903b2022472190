package main

import (
	"os"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestComposeFile checks compose.yaml against the command it runs: every
// pulse service runs a real mode with settings the binary reads, on all
// three NATS nodes with three replicas, and has a health check. (CI also
// validates the file with docker-compose.)
func TestComposeFile(t *testing.T) {
	data, err := os.ReadFile("../../compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Build       any               `yaml:"build"`
			Command     []string          `yaml:"command"`
			Environment map[string]string `yaml:"environment"`
			Healthcheck *struct {
				Test []string `yaml:"test"`
			} `yaml:"healthcheck"`
			Volumes  []string `yaml:"volumes"`
			Ports    []string `yaml:"ports"`
			Networks any      `yaml:"networks"`
		} `yaml:"services"`
		Volumes map[string]any `yaml:"volumes"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	// The settings the binary reads from the environment.
	read := map[string]bool{}
	if err := NewMain().ParseFlags([]string{"-nats", "x"}, func(k string) string { read[k] = true; return "" }); err != nil {
		t.Fatal(err)
	}
	modes := map[string]int{}
	nats := 0
	for name, svc := range doc.Services {
		if svc.Healthcheck == nil || len(svc.Healthcheck.Test) == 0 {
			if name != "lb" {
				t.Errorf("%s has no health check", name)
			}
		}
		switch {
		case strings.HasPrefix(svc.Image, "nats:"):
			nats++
			if !strings.HasSuffix(svc.Image, "-alpine") || !slices.Contains(svc.Command, "-js") || !slices.Contains(svc.Command, "--routes") {
				t.Errorf("%s: want the -alpine image (for the health check's wget), JetStream and routes: %v %v", name, svc.Image, svc.Command)
			}
			if !strings.Contains(strings.Join(svc.Healthcheck.Test, " "), "/healthz?js-enabled-only=true") {
				t.Errorf("%s: health check %v", name, svc.Healthcheck.Test)
			}
			if len(svc.Volumes) == 0 {
				t.Errorf("%s has no persistent volume", name)
			}
		case svc.Build != nil:
			if len(svc.Command) == 0 {
				t.Errorf("%s: no mode", name)
				continue
			}
			modes[svc.Command[0]]++
			for k := range svc.Environment {
				if !read[k] {
					t.Errorf("%s: %s is not a setting pulse reads", name, k)
				}
			}
			if strings.Count(svc.Environment["PULSE_NATS_URL"], "nats://") != 3 || svc.Environment["PULSE_REPLICAS"] != "3" {
				t.Errorf("%s: want all three NATS nodes and three replicas: %v", name, svc.Environment)
			}
			// No password ships in the file: compose refuses to start
			// without one.
			if pw := svc.Environment["PULSE_ADMIN_PASSWORD"]; !strings.HasPrefix(pw, "${PULSE_ADMIN_PASSWORD:?") {
				t.Errorf("%s: admin password %q, want it required from the environment", name, pw)
			}
			if svc.Environment["PULSE_TRUSTED_PROXIES"] != lbAddress(t, data) {
				t.Errorf("%s: trusted proxies %q, want the load balancer's address alone", name, svc.Environment["PULSE_TRUSTED_PROXIES"])
			}
		}
	}
	// The dashboard is published on loopback unless the operator says
	// otherwise; the ingest port is public.
	lb := doc.Services["lb"]
	if !slices.Contains(lb.Ports, "8081:8081") || !slices.Contains(lb.Ports, "${PULSE_DASHBOARD_PUBLISH:-127.0.0.1:2112}:2112") {
		t.Errorf("lb ports %v: want the ingest port public and the dashboard on 127.0.0.1", lb.Ports)
	}
	if nats != 3 || modes[ModeIngest] != 2 || modes[ModeAggregator] != 1 || modes[ModeDashboard] != 2 {
		t.Errorf("%d NATS nodes and parts %v; want 3, 2 ingest, 1 aggregator, 2 dashboards", nats, modes)
	}
	if len(doc.Volumes) != 3 {
		t.Errorf("volumes %v", doc.Volumes)
	}
}

// lbAddress is the fixed address compose.yaml gives the load balancer.
func lbAddress(t *testing.T, data []byte) string {
	t.Helper()
	var doc struct {
		Services struct {
			LB struct {
				Networks map[string]struct {
					IPv4 string `yaml:"ipv4_address"`
				} `yaml:"networks"`
			} `yaml:"lb"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Services.LB.Networks["pulse"].IPv4
}
