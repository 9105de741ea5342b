package ingest

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/wire"
)

// Config tunes validation and group commit.
type Config struct {
	// FutureTolerance: an event captured later than hub clock + this is refused.
	FutureTolerance time.Duration `yaml:"future_tolerance"`
	// MaxAge: an event captured earlier than hub clock - this is refused.
	MaxAge time.Duration `yaml:"max_age"`
	// MaxBatch is the most messages committed in one transaction.
	MaxBatch int `yaml:"max_batch"`
	// QueueSize is the submit queue length (back-pressure beyond it).
	QueueSize int `yaml:"queue_size"`
	// ClockSkewWarn: a gate whose heartbeat shows its clock off by more
	// than this raises an admin warning (log, audit, admin overview).
	// Event times are corrected by the measured offset whatever it is.
	ClockSkewWarn time.Duration `yaml:"clock_skew_warn"`
}

// Default returns the production settings.
func Default() Config {
	return Config{FutureTolerance: 5 * time.Minute, MaxAge: 30 * 24 * time.Hour, MaxBatch: 512, QueueSize: 8192,
		ClockSkewWarn: 2 * time.Minute}
}

// Validate names the first bad field under prefix.
func (c Config) Validate(prefix string) error {
	switch {
	case c.FutureTolerance < 0:
		return conf.Fieldf(join(prefix, "future_tolerance"), "must not be negative")
	case c.MaxAge <= 0:
		return conf.Fieldf(join(prefix, "max_age"), "must be positive")
	case c.MaxBatch < 1 || c.MaxBatch > 10000:
		return conf.Fieldf(join(prefix, "max_batch"), "must be 1..10000")
	case c.QueueSize < 1:
		return conf.Fieldf(join(prefix, "queue_size"), "must be positive")
	case c.ClockSkewWarn < time.Second:
		return conf.Fieldf(join(prefix, "clock_skew_warn"), "must be at least 1s")
	}
	return nil
}

// Message is one MQTT message from a gate.
type Message struct {
	Topic    string
	Payload  []byte
	ClientID string
}

// Result says what ingest did with a message.
type Result int

// Results.
const (
	Stored      Result = iota + 1 // new event committed
	Duplicate                     // event_id already stored; ignored
	Quarantined                   // refused, written to quarantine with the reason
	Updated                       // status or heartbeat applied to the gates table
)

func (r Result) String() string {
	switch r {
	case Stored:
		return "stored"
	case Duplicate:
		return "duplicate"
	case Quarantined:
		return "quarantined"
	case Updated:
		return "updated"
	}
	return "none"
}

// ErrClosed is returned for messages submitted after Close.
var ErrClosed = errors.New("ingest: closed")

// Stats are running counters.
type Stats struct {
	Stored, Duplicates, Quarantined, Updates, Batches, Failures int64
}

type item struct {
	msg      Message
	received int64 // hub clock, ms
	done     func(Result, error)
	// decoded by Submit (on the caller's goroutine, so decoding runs in
	// parallel across gates and the commit loop only touches the database)
	kind   string
	ev     *wire.Event
	reason string
	// filled by the commit loop
	res    Result
	stored *StoredEvent
}

// Ingester validates and stores gate messages with group commit.
type Ingester struct {
	db  *store.DB
	cfg Config
	log *slog.Logger
	now func() time.Time

	queue chan *item
	fan   chan StoredEvent

	mu     sync.RWMutex // guards closed and sending on queue
	closed bool

	lmu       sync.Mutex
	listeners []Listener
	topics    map[string]TopicHandler // further gate topic kinds (AddTopic)
	audit     *audit.Log              // gate alarms (SetAudit); nil: log only
	wg        sync.WaitGroup
	stop      context.CancelFunc
	ctx       context.Context

	stored, dups, quar, upd, batches, failures atomic.Int64
	down                                       bool // commit loop only
}

// New makes an Ingester; call Start before submitting.
func New(db *store.DB, cfg Config, log *slog.Logger, now func() time.Time) (*Ingester, error) {
	if err := cfg.Validate("ingest"); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	return &Ingester{db: db, cfg: cfg, log: log, now: now,
		queue: make(chan *item, cfg.QueueSize), fan: make(chan StoredEvent, 8192)}, nil
}

// AddListener registers l; it is told about every event stored from now on.
func (in *Ingester) AddListener(l Listener) {
	in.lmu.Lock()
	in.listeners = append(in.listeners, l)
	in.lmu.Unlock()
}

// Start runs the commit loop and the listener fan-out until Close.
func (in *Ingester) Start(ctx context.Context) {
	in.ctx, in.stop = context.WithCancel(context.WithoutCancel(ctx))
	in.wg.Add(2)
	go in.commitLoop()
	go in.fanLoop()
}

// Close stops accepting, commits what is queued (drain), waits for the
// listeners to be told, and returns.
func (in *Ingester) Close() {
	in.mu.Lock()
	if in.closed {
		in.mu.Unlock()
		return
	}
	in.closed = true
	close(in.queue)
	in.mu.Unlock()
	in.wg.Wait()
	if in.stop != nil {
		in.stop()
	}
}

// Stats returns the counters.
func (in *Ingester) Stats() Stats {
	return Stats{Stored: in.stored.Load(), Duplicates: in.dups.Load(), Quarantined: in.quar.Load(),
		Updates: in.upd.Load(), Batches: in.batches.Load(), Failures: in.failures.Load()}
}

// Submit queues msg; done (may be nil) is called from the commit goroutine
// after the message's transaction committed (err nil) or finally failed
// (err non-nil: the message must NOT be acknowledged). done must not block.
// Submit blocks while the queue is full (back-pressure).
func (in *Ingester) Submit(msg Message, done func(Result, error)) {
	it := &item{msg: msg, received: in.now().UnixMilli(), done: done}
	if _, _, kind, ok := wire.ParseGateTopic(msg.Topic); ok && kind == "events" {
		it.kind = kind
		it.ev, it.reason = checkEventShape(msg.Topic, msg.Payload)
	}
	in.mu.RLock()
	defer in.mu.RUnlock()
	if in.closed {
		if done != nil {
			done(0, ErrClosed)
		}
		return
	}
	in.queue <- it
}

// Handle submits msg and waits until it is committed.
func (in *Ingester) Handle(ctx context.Context, msg Message) (Result, error) {
	type out struct {
		r   Result
		err error
	}
	ch := make(chan out, 1)
	in.Submit(msg, func(r Result, err error) { ch <- out{r, err} })
	select {
	case o := <-ch:
		return o.r, o.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (in *Ingester) commitLoop() {
	defer in.wg.Done()
	defer close(in.fan)
	batch := make([]*item, 0, in.cfg.MaxBatch)
	for first := range in.queue {
		batch = append(batch[:0], first)
	fill:
		for len(batch) < in.cfg.MaxBatch {
			select {
			case it, ok := <-in.queue:
				if !ok {
					break fill
				}
				batch = append(batch, it)
			default:
				break fill
			}
		}
		in.commit(batch)
	}
}

// commit stores a batch in one transaction, retrying a few times; if the
// batch still fails, each item is tried alone so one bad row cannot block
// the others. A database outage logs one "outage" line and one
// "recovered" line, not one per message.
func (in *Ingester) commit(batch []*item) {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt*50) * time.Millisecond)
		}
		if err = in.commitTx(batch); err == nil {
			in.batches.Add(1)
			in.recovered()
			in.finish(batch, nil)
			return
		}
	}
	in.outage(err)
	for _, it := range batch {
		one := []*item{it}
		if err := in.commitTx(one); err != nil {
			in.failures.Add(1)
			in.finish(one, err)
			continue
		}
		in.finish(one, nil)
	}
}

func (in *Ingester) outage(err error) {
	if !in.down {
		in.down = true
		in.log.Error("ingest outage: cannot commit; messages stay unacknowledged and will be resent", "err", err)
	}
}

func (in *Ingester) recovered() {
	if in.down {
		in.down = false
		in.log.Info("ingest recovered")
	}
}

func (in *Ingester) finish(batch []*item, err error) {
	for _, it := range batch {
		if err == nil {
			switch it.res {
			case Stored:
				in.stored.Add(1)
			case Duplicate:
				in.dups.Add(1)
			case Quarantined:
				in.quar.Add(1)
			case Updated:
				in.upd.Add(1)
			}
		}
		if it.done != nil {
			it.done(it.res, err)
		}
	}
	if err != nil {
		return
	}
	for _, it := range batch {
		if it.stored != nil {
			in.fan <- *it.stored
		}
	}
}

func (in *Ingester) fanLoop() {
	defer in.wg.Done()
	for ev := range in.fan {
		in.lmu.Lock()
		ls := in.listeners
		in.lmu.Unlock()
		for _, l := range ls {
			l.EventStored(in.ctx, ev)
		}
	}
}
