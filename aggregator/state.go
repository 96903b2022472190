package aggregator

import (
	"cmp"
	"slices"
	"time"

	"github.com/pulse-analytics/pulse/event"
)

// Window sizes.
const (
	// chartWindow is the span of the events-per-second chart.
	chartWindow = 60
	// keepSeconds is how many per-second counts a site keeps.
	keepSeconds = 3600
	// topVisitors is how many visitors the overview lists.
	topVisitors = 10
	// futureSlack is how far ahead of the newest batch an event's time may
	// lie; clocks within one cluster agree closer than that.
	futureSlack = 5_000
)

// Site is the aggregated state of one site. It is what a snapshot stores, so
// every field that matters after a restart is exported.
type Site struct {
	// Seq is the last stream sequence applied to this site.
	Seq    uint64            `json:"seq"`
	Events uint64            `json:"events"`
	ByKind map[string]uint64 `json:"byKind"`
	// Visitors holds per-visitor activity, bounded by maxVisitors.
	Visitors map[string]*event.VisitorCount `json:"visitors"`
	// Conns maps each open connection to its visitor.
	Conns map[string]string `json:"conns"`
	// Present counts open connections per visitor.
	Present    map[string]int `json:"present"`
	Arrivals   uint64         `json:"arrivals"`
	Departures uint64         `json:"departures"`
	// Seconds counts events per Unix second over the last keepSeconds.
	Seconds map[int64]uint64 `json:"seconds"`
	// Version counts published overviews.
	Version uint64 `json:"version"`

	dirty bool
}

func newSite() *Site {
	return &Site{
		ByKind:   make(map[string]uint64),
		Visitors: make(map[string]*event.VisitorCount),
		Conns:    make(map[string]string),
		Present:  make(map[string]int),
		Seconds:  make(map[int64]uint64),
	}
}

// fill makes the maps of a decoded snapshot usable.
func (s *Site) fill() {
	if s.ByKind == nil {
		s.ByKind = make(map[string]uint64)
	}
	if s.Visitors == nil {
		s.Visitors = make(map[string]*event.VisitorCount)
	}
	if s.Conns == nil {
		s.Conns = make(map[string]string)
	}
	if s.Present == nil {
		s.Present = make(map[string]int)
	}
	if s.Seconds == nil {
		s.Seconds = make(map[int64]uint64)
	}
}

// applyBatch counts the events of b.
func (s *Site) applyBatch(b *event.Batch) {
	for i := range b.Events {
		e := &b.Events[i]
		s.Events++
		s.ByKind[e.Kind.String()]++
		t := min(e.T, b.Received+futureSlack)
		s.Seconds[t/1000]++
		v := b.VisitorOf(e)
		vc := s.Visitors[v]
		if vc == nil {
			vc = &event.VisitorCount{Visitor: v}
			s.Visitors[v] = vc
		}
		vc.Events++
		vc.LastSeen = max(vc.LastSeen, t)
	}
	s.dirty = true
}

// applyPresence tracks a join or leave. A visitor arrives with its first
// open connection and departs with its last.
func (s *Site) applyPresence(p *event.Presence) {
	switch p.Kind {
	case event.Join:
		if _, ok := s.Conns[p.Conn]; ok {
			return
		}
		s.Conns[p.Conn] = p.Visitor
		s.Present[p.Visitor]++
		if s.Present[p.Visitor] == 1 {
			s.Arrivals++
		}
	case event.Leave:
		v, ok := s.Conns[p.Conn]
		if !ok {
			return
		}
		delete(s.Conns, p.Conn)
		s.Present[v]--
		if s.Present[v] <= 0 {
			delete(s.Present, v)
			s.Departures++
		}
	default:
		return
	}
	s.dirty = true
}

// prune drops per-second counts older than keepSeconds and, when there are
// more than maxVisitors, the visitors seen longest ago that are not present.
func (s *Site) prune(now time.Time, maxVisitors int) {
	oldest := now.Unix() - keepSeconds
	for sec := range s.Seconds {
		if sec < oldest {
			delete(s.Seconds, sec)
		}
	}
	if len(s.Visitors) <= maxVisitors {
		return
	}
	all := make([]*event.VisitorCount, 0, len(s.Visitors))
	for _, v := range s.Visitors {
		all = append(all, v)
	}
	slices.SortFunc(all, func(a, b *event.VisitorCount) int { return cmp.Compare(a.LastSeen, b.LastSeen) })
	// Evict down to 90% so that pruning does not run on every tick.
	excess := len(all) - maxVisitors*9/10
	for _, v := range all {
		if excess == 0 {
			break
		}
		if s.Present[v.Visitor] > 0 {
			continue
		}
		delete(s.Visitors, v.Visitor)
		excess--
	}
}

// overview builds the site's overview panel as of now.
func (s *Site) overview(name string, now time.Time) event.Overview {
	ov := event.Overview{
		Site:       name,
		Version:    s.Version,
		Events:     s.Events,
		ByKind:     make(map[string]uint64, len(s.ByKind)),
		Visitors:   len(s.Present),
		Arrivals:   s.Arrivals,
		Departures: s.Departures,
		PerSecond:  make([]event.Point, chartWindow),
		Updated:    now.UnixMilli(),
	}
	for k, n := range s.ByKind {
		ov.ByKind[k] = n
	}
	// The chart ends at the last complete second.
	last := now.Unix() - 1
	for i := range ov.PerSecond {
		sec := last - chartWindow + 1 + int64(i)
		ov.PerSecond[i] = event.Point{T: sec * 1000, N: s.Seconds[sec]}
	}
	top := make([]event.VisitorCount, 0, len(s.Visitors))
	for _, v := range s.Visitors {
		top = append(top, *v)
	}
	slices.SortFunc(top, func(a, b event.VisitorCount) int {
		if c := cmp.Compare(b.Events, a.Events); c != 0 {
			return c
		}
		return cmp.Compare(a.Visitor, b.Visitor)
	})
	ov.TopVisitors = top[:min(len(top), topVisitors)]
	return ov
}

// activeWithin reports whether the site's chart window holds any event, so
// the chart must slide even without new events.
func (s *Site) activeWithin(now time.Time) bool {
	for sec := now.Unix() - chartWindow - 1; sec <= now.Unix(); sec++ {
		if s.Seconds[sec] > 0 {
			return true
		}
	}
	return false
}
