package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pulse-analytics/pulse/event"
)

// TestOneAddressCannotFillTheNode: connections that send nothing are
// held until the header timeout, so without a bound one address could
// open them until the process had no file left. Here one address meets
// its own limit while a tracker from another is served; then a crowd of
// addresses fills the process, which refuses more at accept and tells
// /readyz, until connections close.
func TestOneAddressCannotFillTheNode(t *testing.T) {
	const perAddr, maxConns = 20, 60
	m := startPulse(t, t.TempDir(), func(c *Config) { c.MaxConns, c.MaxConnsPerAddr = maxConns, perAddr })
	waitReadyz(t, m.MetricsURL, http.StatusOK)
	ingestAddr := strings.TrimPrefix(m.IngestURL, "http://")

	var flood []net.Conn
	for range perAddr {
		flood = append(flood, rawDial(t, "127.0.0.3", ingestAddr))
	}
	if !closedAtOnce(t, rawDial(t, "127.0.0.3", ingestAddr))[0] {
		t.Fatalf("connection %d from one address kept, limit %d", perAddr+1, perAddr)
	}
	tc := dialTrackerFrom(t, "127.0.0.2", m.IngestURL, "demo", "")
	tc.sendBatch(t, 1, "move", 5)
	waitStats(t, m.DashboardURL, "demo", func(ov event.Overview) error {
		if ov.Events != 5 {
			return fmt.Errorf("events %d, want 5", ov.Events)
		}
		return nil
	})
	if n := refusedCount(t, m, "per_addr"); n != 1 {
		t.Errorf("refused per address: %v, want 1", n)
	}

	// Twenty more addresses, two connections each: the process fills
	// (the tracker counts too) and refuses the rest.
	refused := 0
	for i := range 20 {
		for range 2 {
			c := rawDial(t, fmt.Sprintf("127.0.1.%d", i+1), ingestAddr)
			flood = append(flood, c)
		}
	}
	for _, closed := range closedAtOnce(t, flood[perAddr:]...) {
		if closed {
			refused++
		}
	}
	if refused == 0 {
		t.Fatalf("%d connections and a tracker kept, limit %d", len(flood), maxConns)
	}
	if n := refusedCount(t, m, "full"); n != float64(refused) {
		t.Errorf("refused as full: %v, want %d", n, refused)
	}
	body := readyz(t, m.MetricsURL, http.StatusServiceUnavailable)
	if !strings.Contains(body, "connection limit") {
		t.Errorf("/readyz when full: %q, want the connection limit named", body)
	}
	for _, c := range flood {
		c.Close()
	}
	waitReadyz(t, m.MetricsURL, http.StatusOK)
	dialTrackerFrom(t, "127.0.0.4", m.IngestURL, "demo", "").sendBatch(t, 1, "move", 1)
}

func TestMaxConnsFor(t *testing.T) {
	for _, tc := range []struct{ limit, want int }{
		{0, 10_000},      // unknown
		{1024, 768},      // a quarter kept back
		{20_000, 19_488}, // 512 kept back
		{1 << 20, 1<<20 - 512},
	} {
		if got := maxConnsFor(tc.limit); got != tc.want {
			t.Errorf("maxConnsFor(%d) = %d, want %d", tc.limit, got, tc.want)
		}
	}
}

// rawDial opens a TCP connection from the loopback address src that
// sends nothing.
func rawDial(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	c, err := dialerFrom(src).Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedAtOnce reports which of conns, which sent nothing, the server
// closed within a second: refused at accept. A kept one is held until
// the header timeout (10 s). They are read all at once, so that the
// first are not timed out by the server while the last are read.
func closedAtOnce(t *testing.T, conns ...net.Conn) []bool {
	t.Helper()
	closed := make([]bool, len(conns))
	errs := make([]error, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			_, err := c.Read(make([]byte, 1))
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
			case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET):
				closed[i] = true
			default:
				errs[i] = fmt.Errorf("read from %s: %v", c.LocalAddr(), err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return closed
}

// refusedCount reads pulse_connections_refused_total{reason} at the
// metrics listener.
func refusedCount(t *testing.T, m *Main, reason string) float64 {
	t.Helper()
	re := regexp.MustCompile(`(?m)^pulse_connections_refused_total\{reason="` + reason + `"\} (\S+)$`)
	match := re.FindStringSubmatch(get(t, m.MetricsURL+"/metrics"))
	if match == nil {
		return 0
	}
	n, err := strconv.ParseFloat(match[1], 64)
	if err != nil {
		t.Fatalf("refused %s: %v", reason, err)
	}
	return n
}

// readyz answers base/readyz's body, failing unless its status is status.
func readyz(t *testing.T, base string, status int) string {
	t.Helper()
	body, err := readyzIs(base, status)
	if err != nil {
		t.Fatal(err)
	}
	return body
}
