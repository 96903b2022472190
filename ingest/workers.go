package ingest

import "sync"

// maxWorkers bounds the goroutines draining connections' queues. Without
// a bound, thousands of trackers arriving in the same second would each
// have a goroutine, with its stack, waiting for its join to be stored:
// memory the process keeps long after. A worker blocked on a stuck
// client's write holds its slot for at most writeWait.
const maxWorkers = 512

// workers runs connections' queues, at most maxWorkers at once; the
// others wait their turn in a backlog, each connection's tasks still in
// order.
type workers struct {
	mu      sync.Mutex
	running int
	backlog []*conn
}

// schedule runs c's queue on a worker now, or when one is free.
func (w *workers) schedule(c *conn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.running < maxWorkers {
		w.running++
		go w.run(c)
		return
	}
	w.backlog = append(w.backlog, c)
}

func (w *workers) run(c *conn) {
	for c != nil {
		c.work()
		w.mu.Lock()
		c = nil
		if len(w.backlog) > 0 {
			c = w.backlog[0]
			w.backlog[0] = nil
			w.backlog = w.backlog[1:]
		} else {
			w.running--
			w.backlog = nil
		}
		w.mu.Unlock()
	}
}
