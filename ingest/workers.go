package ingest

import (
	"sync"
	"time"
)

// maxWorkers bounds the goroutines draining connections' queues. Without
// a bound, thousands of trackers arriving in the same second would each
// have a goroutine, with its stack, waiting for its join to be stored:
// memory the process keeps long after. A worker blocked on a stuck
// client's write holds its slot for at most writeWait.
const maxWorkers = 512

// maxWorkersPerAddress bounds the workers the connections of one client
// address hold at once. Clients that do not read can each block a worker
// for writeWait, and one address has up to Config.MaxConnsPerIP
// connections: without a share of its own it could keep every worker
// blocked, and with them every other tracker's joins, pongs and closes.
const maxWorkersPerAddress = maxWorkers / 8

// workers runs connections' queues, at most maxWorkers at once and at
// most maxWorkersPerAddress for one address; the others wait their turn,
// each connection's tasks still in order, the addresses taking turns.
type workers struct {
	mu      sync.Mutex
	running int
	busy    map[string]int     // running workers by address
	waiting map[string][]*conn // connections waiting, by address
	turns   []string           // the addresses in waiting, in turn
	queued  int                // connections waiting
	// lastStart is when a worker last took a connection (Unix ns).
	lastStart int64
}

// schedule runs c's queue on a worker now, or when one is free for its
// address.
func (w *workers) schedule(c *conn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.busy == nil {
		w.busy, w.waiting = make(map[string]int), make(map[string][]*conn)
	}
	if w.running < maxWorkers && w.busy[c.ip] < maxWorkersPerAddress {
		w.startLocked(c)
		go w.run(c)
		return
	}
	q, ok := w.waiting[c.ip]
	if !ok {
		w.turns = append(w.turns, c.ip)
	}
	w.waiting[c.ip] = append(q, c)
	w.queued++
}

func (w *workers) startLocked(c *conn) {
	w.running++
	w.busy[c.ip]++
	w.lastStart = time.Now().UnixNano()
}

func (w *workers) run(c *conn) {
	for c != nil {
		c.work()
		w.mu.Lock()
		w.running--
		if w.busy[c.ip]--; w.busy[c.ip] <= 0 {
			delete(w.busy, c.ip)
		}
		c = w.nextLocked()
		w.mu.Unlock()
	}
}

// nextLocked takes the next waiting connection of an address under its
// share, and starts it; nil if there is none. Addresses at their share
// (at most maxWorkers/maxWorkersPerAddress of them) go to the back.
func (w *workers) nextLocked() *conn {
	for range len(w.turns) {
		ip := w.turns[0]
		w.turns = w.turns[1:]
		if w.busy[ip] >= maxWorkersPerAddress {
			w.turns = append(w.turns, ip)
			continue
		}
		q := w.waiting[ip]
		c := q[0]
		q[0] = nil
		if q = q[1:]; len(q) == 0 {
			delete(w.waiting, ip)
		} else {
			w.waiting[ip] = q
			w.turns = append(w.turns, ip)
		}
		if len(w.turns) == 0 {
			w.turns = nil // let the array go
		}
		w.queued--
		w.startLocked(c)
		return c
	}
	return nil
}

// stalled reports whether every worker has been busy for longer than
// wait while connections wait for one: then a new tracker's join, and an
// old one's close, would wait too.
func (w *workers) stalled(now time.Time, wait time.Duration) (waiting int, stalled bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.queued, w.running >= maxWorkers && w.queued > 0 && now.UnixNano()-w.lastStart > int64(wait)
}
