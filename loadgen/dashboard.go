package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Delivery latency is measured on counts. The dashboard shows a site's
// total; when a consumer receives a total of N after one of M, the events
// M+1 to N reached it then, and each one's latency is the time since the
// load generator sent it. Events are counted in about the order they were
// sent, so this is every event's latency to the admin's screen, the wait
// for the aggregation tick included. Sends are logged every millisecond.

// sendLog records when the cumulative count of sent events reached each
// value.
type sendLog struct {
	mu    sync.Mutex
	times []time.Time
	sent  []int64
}

func (l *sendLog) record(now time.Time, sent int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := len(l.sent); n > 0 && l.sent[n-1] == sent {
		return
	}
	l.times = append(l.times, now)
	l.sent = append(l.sent, sent)
}

// delivered calls add for the events from+1 to to, delivered at, with
// their latency and how many events share it.
func (l *sendLog) delivered(from, to int64, at time.Time, add func(lat time.Duration, n int64)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	i := sort.Search(len(l.sent), func(i int) bool { return l.sent[i] > from })
	for ; i < len(l.sent) && from < to; i++ {
		upto := min(l.sent[i], to)
		add(at.Sub(l.times[i]), upto-from)
		from = upto
	}
}

// histogram is a latency distribution of events in 100 µs buckets.
type histogram struct {
	mu      sync.Mutex
	buckets map[int64]int64
	n       int64
}

const bucket = 100 * time.Microsecond

func (h *histogram) add(lat time.Duration, n int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.buckets == nil {
		h.buckets = make(map[int64]int64)
	}
	h.buckets[int64(max(lat, 0)/bucket)] += n
	h.n += n
}

func (h *histogram) summary() Latency {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == 0 {
		return Latency{}
	}
	keys := make([]int64, 0, len(h.buckets))
	for k := range h.buckets {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	at := func(q float64) float64 {
		want, seen := int64(q*float64(h.n)), int64(0)
		for _, k := range keys {
			if seen += h.buckets[k]; seen > want {
				return float64(time.Duration(k+1)*bucket) / float64(time.Millisecond)
			}
		}
		return float64(time.Duration(keys[len(keys)-1]+1)*bucket) / float64(time.Millisecond)
	}
	return Latency{Events: h.n, P50: at(0.5), P90: at(0.9), P99: at(0.99), Max: at(1)}
}

// Latency summarises the latency of events, in milliseconds (to the upper
// edge of 100 µs buckets), over every consumer.
type Latency struct {
	Events int64   `json:"events"`
	P50    float64 `json:"p50Ms"`
	P90    float64 `json:"p90Ms"`
	P99    float64 `json:"p99Ms"`
	Max    float64 `json:"maxMs"`
}

// dashboard is the consumers' side: a logged-in session and the site's
// total at the start.
type dashboard struct {
	base   *url.URL
	client *http.Client
	site   string
}

// login opens a dashboard session with the admin's password.
func login(ctx context.Context, base *url.URL, user, password, site string) (*dashboard, error) {
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	form := url.Values{"username": {user}, "password": {password}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base.JoinPath("/login").String(), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("loadgen: dashboard login: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || len(jar.Cookies(base)) == 0 {
		return nil, fmt.Errorf("loadgen: dashboard login: %s (wrong password?)", resp.Status)
	}
	return &dashboard{base: base, client: client, site: site}, nil
}

// total reads the site's total from the stats API.
func (d *dashboard) total(ctx context.Context) (uint64, error) {
	st, err := d.stats(ctx)
	return st.Events, err
}

// siteStats are the figures of the stats API a run checks.
type siteStats struct {
	Events     uint64 `json:"events"`
	Arrivals   uint64 `json:"arrivals"`
	Departures uint64 `json:"departures"`
}

// stats reads the site's figures from the stats API.
func (d *dashboard) stats(ctx context.Context) (siteStats, error) {
	u := d.base.JoinPath("/api/v1/stats")
	u.RawQuery = url.Values{"site": {d.site}}.Encode()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	resp, err := d.client.Do(req)
	if err != nil {
		return siteStats{}, fmt.Errorf("loadgen: stats: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return siteStats{}, fmt.Errorf("loadgen: stats: %s", resp.Status)
	}
	var st siteStats
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return siteStats{}, fmt.Errorf("loadgen: stats: %w", err)
	}
	return st, nil
}

// panelEvents finds the panel's "events" total in an overview update
// without decoding the rest: a thousand consumers decoding every update
// whole would measure the load generator's CPU, not the server's. The
// panel comes first in the update and names the site, version and then
// the total, so the first "events" is the panel's.
func panelEvents(data []byte) (uint64, bool) {
	_, rest, ok := bytes.Cut(data, []byte(`"events":`))
	if !ok {
		return 0, false
	}
	end := 0
	for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
		end++
	}
	v, err := strconv.ParseUint(string(rest[:end]), 10, 64)
	return v, err == nil
}

// consume reads the site's SSE stream until ctx ends, calling seen with
// each total it shows and when it arrived.
func (d *dashboard) consume(ctx context.Context, seen func(total uint64, at time.Time)) error {
	u := d.base.JoinPath("/sse")
	u.RawQuery = url.Values{"site": {d.site}}.Encode()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := d.client.Do(req)
	if err != nil {
		return fmt.Errorf("loadgen: sse: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("loadgen: sse: %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		data, ok := bytes.CutPrefix(sc.Bytes(), []byte("data: "))
		if !ok {
			continue
		}
		if total, ok := panelEvents(data); ok {
			seen(total, time.Now())
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("loadgen: sse stream ended: %v", sc.Err())
}
