// Package follow consumes a JetStream stream in order, from a given
// sequence on, through NATS server failures: what nats.go's ordered
// consumer does, without the case in which it stops for good.
//
// The ordered consumer keeps its messages on one server (an R1 consumer
// in memory). When that server dies it creates a replacement, but it
// retries the creation under the same name: if the cluster placed that
// name on the server that just died, which it does until it notices,
// every retry times out, silently, until the server comes back (nats.go
// v1.55.0, jetstream/ordered.go, reset). A Follower creates every
// replacement under a new name, so the next attempt is placed afresh.
package follow

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Options say what to follow.
type Options struct {
	// Stream is the stream's name; Filter its subjects to follow (all
	// when empty).
	Stream string
	Filter []string
	// After is the last stream sequence already applied: the first
	// message handled is the next one of Filter after it.
	After uint64
	// Since, when After is 0, starts at the first message stored at or
	// after it instead of the stream's first.
	Since time.Time
	// Heartbeat is how often the server confirms an open pull request
	// (DefaultHeartbeat when 0); two missed ones make the Follower start
	// a new consumer.
	Heartbeat time.Duration
	Logger    *slog.Logger
	// Renewed, when set, is called each time the Follower gives its
	// consumer up to start another (a lost heartbeat, a gap, a deleted
	// consumer, a server going away), with f's lock held: it must not
	// block or call the Follower.
	Renewed func()
}

// DefaultHeartbeat is the pull heartbeat when Options name none. nats.go's
// default for ordered consumers is 5 s. A burst can also leave a consumer
// with no open pull request while the client believes it has one (the
// server stops delivering and sends no heartbeats; nats-server issues 4736
// and 6290 describe the same): with 19,000 classic trackers arriving within
// a second, 1 run in 10 of Pulse's idle benchmark stalled counting for 10 s
// that way. At 1 s such a stall lasts 2 s at most.
const DefaultHeartbeat = time.Second

const (
	// createTimeout bounds one attempt to create a consumer. A consumer
	// placed on a server that has just died never answers, and the
	// cluster goes on placing new ones there for some seconds; a healthy
	// one answers within milliseconds.
	createTimeout = 3 * time.Second
	// inactiveThreshold is how long the server keeps a consumer no one
	// pulls from: the ones given up and not deleted.
	inactiveThreshold = time.Minute
	// minRetry and maxRetry bound the wait between attempts.
	minRetry = 250 * time.Millisecond
	maxRetry = 5 * time.Second
)

// Follower hands a stream's messages to a handler once each, in stream
// order. Create one with Start.
type Follower struct {
	js     jetstream.JetStream
	opts   Options
	handle jetstream.MessageHandler
	log    *slog.Logger

	renew  chan struct{} // a new consumer is needed
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns

	// mu is held while a message is handled, so that no message of a
	// consumer given up is handled after its replacement is created.
	mu sync.Mutex
	// gen numbers the consumers: messages and errors of earlier ones
	// are ignored.
	gen int
	// next is the consumer sequence expected of gen's next message;
	// last the stream sequence of the last message handled.
	next, last uint64
	name       string // gen's consumer, once created
	cc         jetstream.ConsumeContext
}

// Start creates the first consumer, returning its error, and follows the
// stream until ctx ends or Stop is called: after a lost heartbeat, a gap,
// or a deleted consumer, under a new consumer from the message after the
// last one handled. handle is called for one message at a time.
func Start(ctx context.Context, js jetstream.JetStream, opts Options, handle jetstream.MessageHandler) (*Follower, error) {
	if opts.Heartbeat == 0 {
		opts.Heartbeat = DefaultHeartbeat
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	f := &Follower{
		js: js, opts: opts, handle: handle,
		log:   opts.Logger.With("stream", opts.Stream),
		renew: make(chan struct{}, 1),
		done:  make(chan struct{}),
		next:  1,
		last:  opts.After,
	}
	cctx, cancel := context.WithTimeout(ctx, createTimeout)
	defer cancel()
	if err := f.create(cctx, 0, opts.After); err != nil {
		return nil, err
	}
	ctx, f.cancel = context.WithCancel(ctx)
	go f.run(ctx)
	return f, nil
}

// run creates a new consumer whenever one is needed, until ctx ends.
func (f *Follower) run(ctx context.Context) {
	defer close(f.done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.renew:
		}
		f.mu.Lock()
		gen, after, old, oldName := f.gen, f.last, f.cc, f.name
		f.cc, f.name = nil, ""
		f.mu.Unlock()
		if old != nil {
			old.Stop()
			f.deleteSoon(oldName)
		}
		wait := minRetry
		for {
			cctx, cancelCreate := context.WithTimeout(ctx, createTimeout)
			err := f.create(cctx, gen, after)
			cancelCreate()
			if err == nil || ctx.Err() != nil {
				break
			}
			f.log.Warn("consumer not created, retrying", "after_seq", after, "in", wait, "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
			wait = min(2*wait, maxRetry)
		}
	}
}

// create starts consumer gen after stream sequence after and attaches it,
// unless gen was given up meanwhile.
func (f *Follower) create(ctx context.Context, gen int, after uint64) error {
	cfg := jetstream.ConsumerConfig{
		Name:              rand.Text(),
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		FilterSubjects:    f.opts.Filter,
		MemoryStorage:     true,
		Replicas:          1,
		InactiveThreshold: inactiveThreshold,
	}
	switch {
	case after > 0:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, after+1
	case !f.opts.Since.IsZero():
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &f.opts.Since
	}
	cons, err := f.js.CreateConsumer(ctx, f.opts.Stream, cfg)
	if err != nil {
		// It may exist all the same, on a server that did not answer.
		f.deleteSoon(cfg.Name)
		return fmt.Errorf("follow %s: create consumer: %w", f.opts.Stream, err)
	}
	cc, err := cons.Consume(f.handler(gen), jetstream.PullHeartbeat(f.opts.Heartbeat), jetstream.ConsumeErrHandler(f.errHandler(gen)))
	if err != nil {
		f.deleteSoon(cfg.Name)
		return fmt.Errorf("follow %s: consume: %w", f.opts.Stream, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if gen != f.gen {
		// Given up while it was being created.
		cc.Stop()
		f.deleteSoon(cfg.Name)
		return nil
	}
	f.cc, f.name = cc, cfg.Name
	return nil
}

// handler handles the messages of consumer gen.
func (f *Follower) handler(gen int) jetstream.MessageHandler {
	return func(msg jetstream.Msg) {
		meta, err := msg.Metadata()
		f.mu.Lock()
		defer f.mu.Unlock()
		if gen != f.gen {
			return
		}
		if err != nil || meta.Sequence.Consumer != f.next {
			// A message went missing on its way: start again after the
			// last one handled.
			f.renewLocked("gap")
			return
		}
		f.next++
		f.last = meta.Sequence.Stream
		f.handle(msg)
	}
}

// errHandler reacts to the errors of consumer gen.
func (f *Follower) errHandler(gen int) jetstream.ConsumeErrHandler {
	return func(_ jetstream.ConsumeContext, err error) {
		switch {
		case errors.Is(err, jetstream.ErrNoHeartbeat),
			errors.Is(err, jetstream.ErrConsumerDeleted),
			errors.Is(err, jetstream.ErrConsumerNotFound),
			errors.Is(err, jetstream.ErrServerShutdown),
			errors.Is(err, nats.ErrNoResponders):
			// The consumer's server is gone, going, or lost it.
			f.mu.Lock()
			if gen == f.gen {
				f.renewLocked(err.Error())
			}
			f.mu.Unlock()
		case errors.Is(err, jetstream.ErrConnectionClosed), errors.Is(err, nats.ErrConnectionClosed):
			// The connection's owner is shutting down.
		default:
			f.log.Warn("consume", "err", err)
		}
	}
}

// renewLocked gives the current consumer up and has run create another;
// f.mu is held.
func (f *Follower) renewLocked(reason string) {
	f.log.Info("following again under a new consumer", "reason", reason, "after_seq", f.last)
	if f.opts.Renewed != nil {
		f.opts.Renewed()
	}
	f.gen++
	f.next = 1
	select {
	case f.renew <- struct{}{}:
	default:
	}
}

// deleteSoon deletes consumer name in the background, best effort: one
// that is left is removed by the server after inactiveThreshold.
func (f *Follower) deleteSoon(name string) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), createTimeout)
		defer cancel()
		_ = f.js.DeleteConsumer(ctx, f.opts.Stream, name)
	}()
}

// Stop ends following. Messages already delivered to the client are
// handled first, for at most wait; the rest are left to whoever follows
// the stream next.
func (f *Follower) Stop(wait time.Duration) {
	f.cancel()
	<-f.done
	f.mu.Lock()
	cc, name := f.cc, f.name
	f.mu.Unlock()
	if cc != nil {
		cc.Drain()
		select {
		case <-cc.Closed():
		case <-time.After(wait):
			cc.Stop()
		}
		f.deleteSoon(name)
	}
	f.mu.Lock()
	f.gen++ // nothing more is handled
	f.cc, f.name = nil, ""
	f.mu.Unlock()
}
