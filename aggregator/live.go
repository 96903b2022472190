package aggregator

import "time"

// livePacer says when the live panels go out: as soon as a site's totals
// move, but no sooner than every after the last round. A fixed ticker
// made each event wait for the next tick, up to every, whatever the
// traffic; paced, the first move after a quiet spell goes out at once,
// and under steady traffic a round follows the messages that moved the
// totals, so events wait less for the same number of rounds, each of
// which is a write to every dashboard watching.
type livePacer struct {
	every time.Duration
	// last is when the last round went out; armed says a round is
	// waiting for its time (the caller's timer is set).
	last  time.Time
	armed bool
}

// moved tells the pacer the totals moved at now. It returns whether to
// run a round now and, if not, how long until one is due (0: one is
// already armed).
func (p *livePacer) moved(now time.Time) (runNow bool, wait time.Duration) {
	if p.armed {
		return false, 0
	}
	if wait = p.last.Add(p.every).Sub(now); wait <= 0 {
		p.last = now
		return true, 0
	}
	p.armed = true
	return false, wait
}

// due tells the pacer the armed round's time came at now: the round runs.
func (p *livePacer) due(now time.Time) {
	p.armed = false
	p.last = now
}
