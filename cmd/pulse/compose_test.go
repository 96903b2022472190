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
			Volumes []string `yaml:"volumes"`
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
		}
	}
	if nats != 3 || modes[ModeIngest] != 2 || modes[ModeAggregator] != 1 || modes[ModeDashboard] != 2 {
		t.Errorf("%d NATS nodes and parts %v; want 3, 2 ingest, 1 aggregator, 2 dashboards", nats, modes)
	}
	if len(doc.Volumes) != 3 {
		t.Errorf("volumes %v", doc.Volumes)
	}
}
