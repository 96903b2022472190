package dashboard

import (
	"net/http"
	"strconv"
	"sync"
)

// streamSlots bounds the open SSE streams: at most perUser for one user
// (all their sessions and tabs together) and at most total on this node.
// Each stream holds a goroutine, a mailbox and a socket, and a session is
// all it takes to open one, so a leaked session or a runaway script must
// not open them without end.
type streamSlots struct {
	perUser, total int

	mu     sync.Mutex
	open   int
	byUser map[string]int
}

// streamRefusal is why take refused a stream: the status to answer with
// and the message.
type streamRefusal struct {
	status int
	msg    string
}

func newStreamSlots(perUser, total int) *streamSlots {
	return &streamSlots{perUser: perUser, total: total, byUser: make(map[string]int)}
}

// take reserves a stream for user, or says why not; a reserved stream is
// given back with release.
func (s *streamSlots) take(user string) *streamRefusal {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.open >= s.total:
		return &streamRefusal{503, "this dashboard node has as many live streams as it serves; try again soon"}
	case s.byUser[user] >= s.perUser:
		return &streamRefusal{429, "too many live streams open for this user; close some dashboard tabs"}
	}
	s.open++
	s.byUser[user]++
	return nil
}

// takeStream reserves a stream of slots for key, or answers why not
// (what names the kind of stream in the message) and returns false.
func (s *Server) takeStream(w http.ResponseWriter, slots *streamSlots, key, what string) bool {
	no := slots.take(key)
	if no == nil {
		return true
	}
	s.metrics.sseRefused.WithLabelValues(strconv.Itoa(no.status)).Inc()
	w.Header().Set("Retry-After", "5")
	writeJSON(w, no.status, map[string]string{"error": what + no.msg})
	return false
}

func (s *streamSlots) release(user string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.open--
	if s.byUser[user]--; s.byUser[user] <= 0 {
		delete(s.byUser, user)
	}
}
