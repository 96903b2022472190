// Package event holds the wire types and NATS names that ingest, aggregator
// and dashboard speak. It is the only package those three share, so it holds
// data shapes and names only, no behaviour beyond validation.
package event

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"regexp"
	"strconv"
	"strings"
)

// Stream and subject names. Sites are single NATS tokens (see ValidSite), so
// a subject built from one never gains extra tokens.
const (
	// StreamActivity holds tracker batches and presence events.
	StreamActivity = "ACTIVITY"

	// DefaultSite is the site of the embedded default and of classic
	// single-event clients that name no site.
	DefaultSite = "demo"

	// PanelOverview is the dashboard panel with totals, visitors and events
	// per second.
	PanelOverview = "overview"
	// PanelLive is a site's live panel: its running totals and the
	// current second, sent between overviews as soon as they change, so
	// that an event shows on the dashboard within a fraction of a second
	// instead of at the next overview.
	PanelLive = "live"
	// PanelHeat is a site's heat panel: its pages' heatmaps by viewport
	// width, which the overlay on the site's own pages draws.
	PanelHeat = "heat"

	// StreamQuotes holds every fetched quote and the ingest nodes' poll
	// statistics.
	StreamQuotes = "QUOTES"
	// SubjectQuotesPanel carries the quotes panel, which belongs to no site.
	SubjectQuotesPanel = "dash.quotes"
)

// QuoteSubject is the subject a fetched quote of symbol is published on.
// Symbols may hold '.', which NATS would split on, so it becomes '_'.
func QuoteSubject(symbol string) string { return "quotes." + strings.ReplaceAll(symbol, ".", "_") }

// QuoteStatsSubject is the subject an ingest node publishes its poll
// statistics on.
func QuoteStatsSubject(node string) string { return "quotestats." + node }

// QuoteSubjects are the subjects of the QUOTES stream.
var QuoteSubjects = []string{"quotes.*", "quotestats.*"}

// CallInBuckets are the upper bounds, in seconds, of the callIn histogram
// in PollStats and in ingest nodes' status; the last bucket counts
// everything longer.
var CallInBuckets = []float64{1, 2, 5, 10, 30, 60, 300}

// CallInBucket is the bucket of CallInBuckets, or the one after them, that
// a callIn of seconds falls in.
func CallInBucket(seconds float64) int {
	i := 0
	for i < len(CallInBuckets) && seconds > CallInBuckets[i] {
		i++
	}
	return i
}

// CallInFigure names bucket i of CallInBuckets among a node's status
// figures: callin_le_1s, …, callin_gt_300s.
func CallInFigure(i int) string {
	if i < len(CallInBuckets) {
		return "callin_le_" + strconv.FormatFloat(CallInBuckets[i], 'f', -1, 64) + "s"
	}
	return "callin_gt_" + strconv.FormatFloat(CallInBuckets[len(CallInBuckets)-1], 'f', -1, 64) + "s"
}

// Quote is one quote of one symbol, as the quote API serves it and the
// QUOTES stream carries it.
type Quote struct {
	Symbol        string  `json:"symbol"`
	Price         float64 `json:"price"`
	Change        float64 `json:"change"`
	ChangePercent float64 `json:"changePercent"`
	Open          float64 `json:"open"`
	High          float64 `json:"high"`
	Low           float64 `json:"low"`
	PrevClose     float64 `json:"prevClose"`
	Volume        int64   `json:"volume"`
	// Time is when the quote's data is as of, in Unix ms.
	Time   int64  `json:"time"`
	Source string `json:"source"`
	// StaleAt is when the quote turns stale, in Unix ms: when the next
	// one should have replaced it, by the margin the callIn policy gives
	// (quotes.StaleAfter). Set by the poller when it fetches the quote.
	StaleAt int64 `json:"staleAt,omitempty"`
	// Stale is set on a quote served after StaleAt, whatever the reason:
	// a late fetch, a lost lease owner, upstream errors, a closed market.
	Stale bool `json:"stale,omitempty"`
}

// StaleAtTime reports whether q is stale at now (Unix ms). A quote
// without StaleAt (stored before it existed) is not judged.
func (q *Quote) StaleAtTime(now int64) bool { return q.StaleAt > 0 && now > q.StaleAt }

// PricePoint is one price of a symbol at a time (Unix ms).
type PricePoint struct {
	T int64   `json:"t"`
	P float64 `json:"p"`
}

// Candle is one minute of a symbol's prices.
type Candle struct {
	// T is the start of the minute in Unix ms.
	T      int64   `json:"t"`
	Open   float64 `json:"o"`
	Close  float64 `json:"c"`
	Low    float64 `json:"l"`
	High   float64 `json:"h"`
	Volume int64   `json:"v"`
}

// SymbolPanel is what the quotes panel shows of one symbol.
type SymbolPanel struct {
	Last Quote `json:"last"`
	// Points are the fetched prices of the last hour, oldest first.
	Points []PricePoint `json:"points"`
	// Candles are the last hour's 1-minute candles, oldest first.
	Candles []Candle `json:"candles"`
}

// PollPoint is one minute of the cluster's quote polls.
type PollPoint struct {
	T           int64  `json:"t"`
	Polls       uint64 `json:"polls"`
	Futile      uint64 `json:"futile"`
	Fetches     uint64 `json:"fetches"`
	FetchErrors uint64 `json:"fetchErrors"`
}

// QuotesPanel is the quotes panel: what dash.quotes carries and the
// dashboard's quotes page shows.
type QuotesPanel struct {
	Version uint64 `json:"version"`
	// Symbols are sorted by symbol.
	Symbols []SymbolPanel `json:"symbols"`
	// PerMinute covers the last hour of polls, oldest first.
	PerMinute []PollPoint `json:"perMinute"`
	// PollsPerSecond, FutileShare (0–1), FetchesPerMinute and
	// MeanStalenessMs (mean age of the data served, per poll) summarise
	// the last complete minutes (up to 5).
	PollsPerSecond   float64 `json:"pollsPerSecond"`
	FutileShare      float64 `json:"futileShare"`
	FetchesPerMinute float64 `json:"fetchesPerMinute"`
	MeanStalenessMs  float64 `json:"meanStalenessMs"`
	// CallIn counts the last hour's answers by CallInBuckets.
	CallIn []uint64 `json:"callIn"`
	// Nodes is the number of ingest nodes that reported in the last hour.
	Nodes   int   `json:"nodes"`
	Updated int64 `json:"updated"`
}

// PollStats are an ingest node's quote-poll counts over one period.
type PollStats struct {
	Node string `json:"node"`
	// Start and End bound the period, in Unix ms.
	Start int64  `json:"start"`
	End   int64  `json:"end"`
	Polls uint64 `json:"polls"`
	// Futile polls returned nothing newer than the widget had.
	Futile uint64 `json:"futile"`
	// Fetches are upstream calls this node made; FetchErrors failed.
	Fetches     uint64 `json:"fetches"`
	FetchErrors uint64 `json:"fetchErrors"`
	// CallIn counts answers by callIn, bucketed by CallInBuckets (one
	// more bucket for longer).
	CallIn []uint64 `json:"callIn"`
	// StalenessMs sums the age of served quotes, for a mean.
	StalenessMs uint64 `json:"stalenessMs"`
}

// Partitions is the number of partitions the activity of all sites is
// spread over, by site, so that several aggregators can share the load:
// each owns a slice of the partitions. It is fixed: changing it would move
// sites between subjects.
const Partitions = 16

// Partition returns the partition of site.
func Partition(site string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(site))
	return int(h.Sum32() % Partitions)
}

// ActivitySubject is the subject tracker batches of site are published on:
// activity.<partition>.<site>.
func ActivitySubject(site string) string {
	return "activity." + strconv.Itoa(Partition(site)) + "." + site
}

// PresenceSubject is the subject join and leave events of site are
// published on: presence.<partition>.<site>.
func PresenceSubject(site string) string {
	return "presence." + strconv.Itoa(Partition(site)) + "." + site
}

// PartitionSubjects are the subjects of partition p.
func PartitionSubjects(p int) []string {
	return []string{"activity." + strconv.Itoa(p) + ".*", "presence." + strconv.Itoa(p) + ".*"}
}

// DashSubject is the core NATS subject the aggregator publishes panel
// updates of site on.
func DashSubject(site, panel string) string { return "dash." + site + "." + panel }

// ActivitySubjects are the subjects of the ACTIVITY stream.
var ActivitySubjects = []string{"activity.*.*", "presence.*.*"}

var siteKey = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// ValidSite reports whether key can name a site: lower-case letters, digits,
// '-' and '_', at most 63 characters, so it is one NATS subject token and one
// KV key token.
func ValidSite(key string) bool { return siteKey.MatchString(key) }

// Kind is what a tracker event records.
type Kind uint8

// Event kinds. The zero Kind is invalid so that a missing kind is an error.
const (
	KindMove Kind = iota + 1
	KindClick
	KindScroll
	KindVisibility
	KindResize
	KindLeave
	KindNavigate
	// KindDeadClick is a click after which the page did nothing within
	// the tracker's wait (2.5 s): no navigation, scroll, DOM change or
	// new window. pulse.js reports it besides the click, with the same
	// selector and position.
	KindDeadClick
)

var kindNames = [...]string{
	KindMove:       "move",
	KindClick:      "click",
	KindScroll:     "scroll",
	KindVisibility: "visibility",
	KindResize:     "resize",
	KindLeave:      "leave",
	KindNavigate:   "navigate",
	KindDeadClick:  "deadclick",
}

// KindSlots is one more than the largest kind: an array of this length
// holds a count per kind, indexed by the kind.
const KindSlots = len(kindNames)

// Kinds lists every valid kind in order.
func Kinds() []Kind {
	ks := make([]Kind, 0, len(kindNames)-1)
	for k := KindMove; int(k) < len(kindNames); k++ {
		ks = append(ks, k)
	}
	return ks
}

// String returns the kind's name in words ("move", "click", …).
func (k Kind) String() string {
	if k == 0 || int(k) >= len(kindNames) {
		return fmt.Sprintf("kind(%d)", uint8(k))
	}
	return kindNames[k]
}

// ParseKind returns the kind named s.
func ParseKind(s string) (Kind, error) {
	for k := KindMove; int(k) < len(kindNames); k++ {
		if kindNames[k] == s {
			return k, nil
		}
	}
	return 0, fmt.Errorf("unknown event kind %q", s)
}

// MarshalText encodes the kind as its name.
func (k Kind) MarshalText() ([]byte, error) {
	if k == 0 || int(k) >= len(kindNames) {
		return nil, fmt.Errorf("invalid event kind %d", uint8(k))
	}
	return []byte(kindNames[k]), nil
}

// UnmarshalText decodes a kind from its name.
func (k *Kind) UnmarshalText(b []byte) error {
	v, err := ParseKind(string(b))
	if err != nil {
		return err
	}
	*k = v
	return nil
}

// Event is one thing a visitor did.
type Event struct {
	Kind Kind `json:"k"`
	// T is the time of the event in milliseconds since the Unix epoch, as
	// the ingest node saw it.
	T int64 `json:"t"`
	// X and Y are page coordinates in CSS pixels; for scroll, Y is the
	// scroll depth in pixels.
	X int32 `json:"x"`
	Y int32 `json:"y"`
	// VW and VH are the viewport size, so heatmaps can normalise across
	// screens. Zero when the client did not say.
	VW int32 `json:"vw,omitempty"`
	VH int32 `json:"vh,omitempty"`
	// Path is the page path the event happened on.
	Path string `json:"p,omitempty"`
	// Visitor overrides the batch's visitor; classic clients name the
	// visitor in every frame, so their batches mix visitors.
	Visitor string `json:"v,omitempty"`
	// Target is a short CSS selector of a click's target.
	Target string `json:"sel,omitempty"`
	// PH is the page's height for scroll events, so the aggregator can
	// tell how deep into the page Y is. Zero when unknown.
	PH int32 `json:"ph,omitempty"`
	// OX and OY are where a click fell within its target's box, in
	// thousandths of the box's width and height (0–1000), so clicks can
	// be drawn on the element wherever the layout puts it. Zero for
	// other events, and for clicks of trackers that do not send them.
	OX int32 `json:"ox,omitempty"`
	OY int32 `json:"oy,omitempty"`
}

// Batch is the payload of an activity.<site> message: events accepted from
// one session (or, for classic clients, from one ingest node).
type Batch struct {
	Site    string `json:"site"`
	Session string `json:"session,omitempty"`
	Visitor string `json:"visitor,omitempty"`
	// Seq is the tracker's batch sequence number (0 for classic batches).
	Seq uint64 `json:"seq,omitempty"`
	// Node is the ingest node that accepted the batch.
	Node string `json:"node"`
	// Received is when the ingest node accepted the batch, in Unix ms.
	Received int64   `json:"received"`
	Events   []Event `json:"events"`
}

// VisitorOf returns the visitor an event of b belongs to.
func (b *Batch) VisitorOf(e *Event) string {
	if e.Visitor != "" {
		return e.Visitor
	}
	if b.Visitor != "" {
		return b.Visitor
	}
	return b.Session
}

// PresenceKind says whether a connection joined or left.
type PresenceKind string

// Presence kinds.
const (
	Join  PresenceKind = "join"
	Leave PresenceKind = "leave"
)

// Presence is the payload of a presence.<site> message. Presence is kept
// per connection, so a reconnect whose join overtakes the old connection's
// leave never makes a visitor vanish.
type Presence struct {
	Kind    PresenceKind `json:"kind"`
	Site    string       `json:"site"`
	Conn    string       `json:"conn"`
	Session string       `json:"session"`
	Visitor string       `json:"visitor"`
	Node    string       `json:"node"`
	// Reason says why a connection left: "closed", "timeout", "error",
	// "shutdown".
	Reason string `json:"reason,omitempty"`
	Time   int64  `json:"time"`
}

// Point is one value of a time series.
type Point struct {
	// T is the start of the interval in Unix ms.
	T int64  `json:"t"`
	N uint64 `json:"n"`
}

// VisitorCount is the activity of one visitor.
type VisitorCount struct {
	Visitor string `json:"visitor"`
	Events  uint64 `json:"events"`
	// LastSeen is the time of the visitor's last event in Unix ms.
	LastSeen int64 `json:"lastSeen"`
}

// Overview is the overview panel of a site: what dash.<site>.overview
// carries and what the dashboard renders and serves as stats.
type Overview struct {
	Site string `json:"site"`
	// Version grows with every change, so dashboards can name SSE events
	// and drop stale updates.
	Version uint64 `json:"version"`
	// Events counts every event the aggregator has counted for the site.
	Events uint64            `json:"events"`
	ByKind map[string]uint64 `json:"byKind"`
	// Visitors is the number of distinct visitors present now.
	Visitors   int    `json:"visitors"`
	Arrivals   uint64 `json:"arrivals"`
	Departures uint64 `json:"departures"`
	// PerSecond is events per second over the last minute, oldest first,
	// one point per second, zeros included.
	PerSecond []Point `json:"perSecond"`
	// PerSecondByKind splits PerSecond by kind: one count per second of
	// PerSecond for each kind seen in the last minute.
	PerSecondByKind map[string][]uint64 `json:"perSecondByKind"`
	// PerMinute covers the last hour, oldest first, one point per minute.
	PerMinute []MinutePoint `json:"perMinute"`
	// Day covers the last 24 hours in 10-minute points, oldest first.
	Day []Point `json:"day"`
	// TopVisitors are the most active visitors, most active first.
	TopVisitors []VisitorCount `json:"topVisitors"`
	// RageClicks counts bursts of rapid clicks on one spot.
	RageClicks uint64 `json:"rageClicks"`
	// RecentRage lists the latest rage clicks, newest first.
	RecentRage []RageClick `json:"recentRage"`
	// Pages are the most active pages, most active first.
	Pages []PageStats `json:"pages"`
	// Updated is when the aggregator built this overview, in Unix ms.
	Updated int64 `json:"updated"`
}

// MinutePoint is one minute of a site's activity.
type MinutePoint struct {
	// T is the start of the minute in Unix ms.
	T          int64             `json:"t"`
	Events     uint64            `json:"events"`
	ByKind     map[string]uint64 `json:"byKind,omitempty"`
	Arrivals   uint64            `json:"arrivals"`
	Departures uint64            `json:"departures"`
}

// ElementStats is the clicks on one element of a page, named by the
// tracker's short CSS selector of it.
type ElementStats struct {
	Selector   string `json:"selector"`
	Clicks     uint64 `json:"clicks"`
	RageClicks uint64 `json:"rageClicks"`
	DeadClicks uint64 `json:"deadClicks"`
	// Spots, in heat panels only, is where on the element its clicks
	// fell: cells of a 10 × 10 grid over its box, row 0 at the top.
	Spots []HeatCell `json:"spots,omitempty"`
}

// RageClick is a burst of rapid clicks in a small area.
type RageClick struct {
	Path   string `json:"path"`
	Target string `json:"target,omitempty"`
	X      int32  `json:"x"`
	Y      int32  `json:"y"`
	Clicks int    `json:"clicks"`
	// T is the time of the burst's first click in Unix ms.
	T int64 `json:"t"`
}

// Heatmap grid. X is normalised by the viewport width into HeatCols
// columns; Y is measured in the same unit (a column's width), so a cell is
// square and a responsive page lines up across screen sizes. Rows beyond
// HeatRows (far down long pages) are counted in the last row.
const (
	HeatCols = 40
	HeatRows = 100
)

// Viewport widths: heatmaps are also kept per kind of screen, so that an
// overlay drawn on a phone-sized window shows what phones did. The bounds
// are the common CSS breakpoints.
const (
	WidthPhone   = iota // narrower than 768 CSS px
	WidthTablet         // 768 to 1023
	WidthDesktop        // 1024 and wider
	WidthBuckets
)

// WidthNames names the width buckets.
var WidthNames = [WidthBuckets]string{"phone", "tablet", "desktop"}

// WidthBucket returns the bucket of a viewport vw CSS px wide.
func WidthBucket(vw int32) int {
	switch {
	case vw < 768:
		return WidthPhone
	case vw < 1024:
		return WidthTablet
	}
	return WidthDesktop
}

// LivePanel is what dash.<site>.live carries. Its version is on the scale
// of the overview's (one counter per site), so the two order together.
// Site, version and events come first, as in Overview.
type LivePanel struct {
	Site       string            `json:"site"`
	Version    uint64            `json:"version"`
	Events     uint64            `json:"events"`
	ByKind     map[string]uint64 `json:"byKind"`
	Visitors   int               `json:"visitors"`
	Arrivals   uint64            `json:"arrivals"`
	Departures uint64            `json:"departures"`
	RageClicks uint64            `json:"rageClicks"`
	// Second is the current second: its start (Unix ms) and its events
	// by kind so far.
	Second       int64             `json:"second"`
	SecondByKind map[string]uint64 `json:"secondByKind"`
	Updated      int64             `json:"updated"`
}

// HeatPanel is what dash.<site>.heat carries: each page's heatmaps by
// viewport width, its scroll depth and its most clicked elements.
type HeatPanel struct {
	Site    string     `json:"site"`
	Version uint64     `json:"version"`
	Updated int64      `json:"updated"`
	Pages   []PageHeat `json:"pages"`
}

// PageHeat is one page of a heat panel.
type PageHeat struct {
	Path string `json:"path"`
	// Widths holds the heatmaps by WidthBucket.
	Widths        [WidthBuckets]WidthHeat `json:"widths"`
	ScrollReached [10]uint64              `json:"scrollReached"`
	PageViews     uint64                  `json:"pageViews"`
	Elements      []ElementStats          `json:"elements,omitempty"`
}

// WidthHeat is a page's heatmaps for one width bucket.
type WidthHeat struct {
	Clicks []HeatCell `json:"clicks,omitempty"`
	Moves  []HeatCell `json:"moves,omitempty"`
}

// HeatCell is one non-empty cell of a heatmap.
type HeatCell struct {
	Col int    `json:"c"`
	Row int    `json:"r"`
	N   uint64 `json:"n"`
}

// PageStats is the activity on one page of a site.
type PageStats struct {
	Path string `json:"path"`
	// Visitors are those present whose latest event was on this page.
	Visitors   int    `json:"visitors"`
	Events     uint64 `json:"events"`
	Clicks     uint64 `json:"clicks"`
	RageClicks uint64 `json:"rageClicks"`
	DeadClicks uint64 `json:"deadClicks"`
	// Elements are the page's most clicked elements, most clicked first.
	Elements []ElementStats `json:"elements,omitempty"`
	// ScrollReached[d] counts page views that scrolled to at least
	// (d+1)×10% of the page.
	ScrollReached [10]uint64 `json:"scrollReached"`
	// PageViews counts page views that reported scroll depth.
	PageViews uint64     `json:"pageViews"`
	ClickHeat []HeatCell `json:"clickHeat"`
	MoveHeat  []HeatCell `json:"moveHeat"`
	// PerMinute is the page's last hour: events by kind, and arrivals and
	// departures of page views (a session coming to or leaving the page).
	PerMinute []MinutePoint `json:"perMinute"`
}

// Decode unmarshals data into v with a wrapped error naming what.
func Decode(what string, data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode %s: %w", what, err)
	}
	return nil
}
