package quotes

import (
	"fmt"
	"time"
)

// Market says when an exchange trades. The zero Market is always open.
type Market struct {
	// Location is the exchange's time zone; nil means always open.
	Location *time.Location
	// Open and Close are the session's times of day in Location.
	Open, Close time.Duration
}

// NYSE is the New York Stock Exchange's regular session, 09:30–16:00
// America/New_York, Monday to Friday. Holidays are not known to it.
func NYSE() (Market, error) {
	loc, err := time.LoadLocation("America/New_York")
	if err != nil {
		return Market{}, fmt.Errorf("market hours: %w", err)
	}
	return Market{Location: loc, Open: 9*time.Hour + 30*time.Minute, Close: 16 * time.Hour}, nil
}

// ParseMarket reads "09:30-16:00 America/New_York"; "always" (or "")
// means a market that never closes, like the simulated one by default.
func ParseMarket(s string) (Market, error) {
	if s == "" || s == "always" {
		return Market{}, nil
	}
	var oh, om, ch, cm int
	var zone string
	if _, err := fmt.Sscanf(s, "%d:%d-%d:%d %s", &oh, &om, &ch, &cm, &zone); err != nil {
		return Market{}, fmt.Errorf("market hours %q: want like 09:30-16:00 America/New_York: %w", s, err)
	}
	loc, err := time.LoadLocation(zone)
	if err != nil {
		return Market{}, fmt.Errorf("market hours %q: %w", s, err)
	}
	m := Market{Location: loc, Open: time.Duration(oh)*time.Hour + time.Duration(om)*time.Minute, Close: time.Duration(ch)*time.Hour + time.Duration(cm)*time.Minute}
	if m.Open >= m.Close || m.Close > 24*time.Hour {
		return Market{}, fmt.Errorf("market hours %q: opening must come before closing", s)
	}
	return m, nil
}

// IsOpen reports whether the market trades at t.
func (m Market) IsOpen(t time.Time) bool {
	if m.Location == nil {
		return true
	}
	local := t.In(m.Location)
	if wd := local.Weekday(); wd == time.Saturday || wd == time.Sunday {
		return false
	}
	sinceMidnight := local.Sub(midnight(local))
	return sinceMidnight >= m.Open && sinceMidnight < m.Close
}

// NextOpen returns the next time at or after t when the market opens; t
// itself while it is open.
func (m Market) NextOpen(t time.Time) time.Time {
	if m.IsOpen(t) {
		return t
	}
	local := t.In(m.Location)
	for day := 0; day < 8; day++ {
		d := midnight(local.AddDate(0, 0, day))
		open := d.Add(m.Open)
		if wd := d.Weekday(); wd != time.Saturday && wd != time.Sunday && !open.Before(local) {
			return open
		}
	}
	return t // unreachable for a valid Market
}

func midnight(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, t.Location())
}
