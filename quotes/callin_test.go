package quotes

import (
	"testing"
	"time"
)

func TestCallIn(t *testing.T) {
	now := time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC)
	sec := func(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
	base := Situation{Now: now, NextFresh: now.Add(3 * time.Second), Interval: 5 * time.Second, MarketOpen: true}
	tests := []struct {
		name     string
		edit     func(*Situation)
		min, max time.Duration
	}{
		{"just after the next fresh data", func(s *Situation) {}, sec(3.1), sec(3.1)},
		{"jitter spreads after it, by at most a tenth of the interval", func(s *Situation) { s.Jitter = 0.999 }, sec(3.1), sec(3.6)},
		{"fresh data late: look again soon", func(s *Situation) { s.NextFresh = now.Add(-time.Second) }, sec(0.5), sec(0.5)},
		{"fresh data due now", func(s *Situation) { s.NextFresh = now }, sec(0.1), sec(0.5)},
		{"never sooner than the floor", func(s *Situation) { s.Interval = 100 * time.Millisecond; s.NextFresh = now }, minCallIn, minCallIn},
		{"one error: twice the interval", func(s *Situation) { s.Errors = 1 }, sec(10), sec(10)},
		{"three errors: eight times", func(s *Situation) { s.Errors = 3 }, sec(40), sec(40)},
		{"many errors: capped", func(s *Situation) { s.Errors = 30 }, maxErrorBackoff, maxErrorBackoff},
		{"error with a later retry", func(s *Situation) { s.Errors = 1; s.NextFresh = now.Add(time.Minute) }, sec(60.1), sec(60.1)},
		{"market closed: until it opens", func(s *Situation) { s.MarketOpen = false; s.NextOpen = now.Add(10 * time.Minute) }, sec(600.1), sec(600.1)},
		{"market closed for the weekend: capped", func(s *Situation) { s.MarketOpen = false; s.NextOpen = now.Add(60 * time.Hour) }, maxClosedWait + pollMargin, maxClosedWait + pollMargin},
		{"loaded node: doubled per level", func(s *Situation) { s.LoadLevel = 2 }, sec(12.4), sec(12.4)},
		{"long interval: jitter capped", func(s *Situation) { s.Interval = time.Hour; s.NextFresh = now.Add(time.Minute); s.Jitter = 0.999 }, sec(60.1), sec(62.1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := base
			tt.edit(&s)
			got := CallIn(s)
			if got < tt.min || got > tt.max {
				t.Errorf("CallIn = %v, want %v to %v", got, tt.min, tt.max)
			}
		})
	}
}

func TestStaleAfter(t *testing.T) {
	for _, tt := range []struct{ interval, want time.Duration }{
		{time.Second, 1200 * time.Millisecond},             // 100 ms margin, 100 ms spread
		{time.Minute, time.Minute + 2100*time.Millisecond}, // the spread's cap, 2 s
		{100 * time.Millisecond, 210 * time.Millisecond},
	} {
		if got := StaleAfter(tt.interval); got != tt.want {
			t.Errorf("StaleAfter(%v) = %v, want %v", tt.interval, got, tt.want)
		}
	}
}

func TestMarket(t *testing.T) {
	nyse, err := NYSE()
	if err != nil {
		t.Fatal(err)
	}
	ny := nyse.Location
	at := func(day, h, m int) time.Time { return time.Date(2026, 11, day, h, m, 0, 0, ny) }
	tests := []struct {
		name     string
		t        time.Time
		open     bool
		nextOpen time.Time
	}{
		{"Monday morning before the bell", at(23, 9, 29), false, at(23, 9, 30)},
		{"at the bell", at(23, 9, 30), true, at(23, 9, 30)},
		{"afternoon", at(23, 15, 59), true, at(23, 15, 59)},
		{"at the close", at(23, 16, 0), false, at(24, 9, 30)},
		{"Friday evening", at(27, 18, 0), false, at(30, 9, 30)},
		{"Saturday", at(28, 12, 0), false, at(30, 9, 30)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nyse.IsOpen(tt.t); got != tt.open {
				t.Errorf("IsOpen = %v", got)
			}
			if got := nyse.NextOpen(tt.t); !got.Equal(tt.nextOpen) {
				t.Errorf("NextOpen = %v, want %v", got, tt.nextOpen)
			}
		})
	}
	if m, err := ParseMarket("09:30-16:00 America/New_York"); err != nil || m.Open != nyse.Open || m.Close != nyse.Close {
		t.Errorf("ParseMarket = %+v, %v", m, err)
	}
	for _, bad := range []string{"9-5", "16:00-09:30 UTC", "09:30-16:00 Mars/Olympus"} {
		if _, err := ParseMarket(bad); err == nil {
			t.Errorf("ParseMarket(%q) accepted", bad)
		}
	}
	if !(Market{}).IsOpen(at(28, 3, 0)) {
		t.Error("the zero market is always open")
	}
}

func TestValidSymbol(t *testing.T) {
	for s, want := range map[string]bool{
		"IBM": true, "A": true, "BRK.B": true, "RDS-A": true, "GOOGL": true, "X1": true,
		"": false, "ibm": false, "1AB": false, "TOOLONGX": false, "A.": false, "A..B": false, "<x>": false, "IBM ": false, "BRK.ABCD": false,
	} {
		if got := ValidSymbol(s); got != want {
			t.Errorf("ValidSymbol(%q) = %v", s, got)
		}
	}
}
