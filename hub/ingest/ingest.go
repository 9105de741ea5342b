package ingest

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
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
}

// Default returns the production settings.
func Default() Config {
	return Config{FutureTolerance: 5 * time.Minute, MaxAge: 30 * 24 * time.Hour, MaxBatch: 512, QueueSize: 8192}
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
		it.ev, it.reason = CheckEvent(in.cfg, msg.Topic, msg.Payload, time.UnixMilli(it.received))
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

type gateRow struct {
	school string
	active bool
	found  bool
}

type pupilRow struct {
	school, class string
	found         bool
	// snapshots: the pupil's consent allows keeping gate face crops
	// (audit.SnapshotsAllowed), read in the ingest transaction.
	snapshots bool
}

// txState caches lookups within one transaction.
type txState struct {
	tx     *sql.Tx
	gates  map[string]gateRow
	pupils map[string]pupilRow
	ins    *sql.Stmt
	seen   map[string]gateSeen // per gate, from this batch's events
}

// gateSeen: latest hub receive time and the smallest (hub - edge) clock
// difference among a gate's events in one batch.
type gateSeen struct {
	at, minDelay int64
	has          bool
}

func (in *Ingester) commitTx(batch []*item) error {
	return in.db.Tx(in.ctx, func(tx *sql.Tx) error {
		st := &txState{tx: tx, gates: map[string]gateRow{}, pupils: map[string]pupilRow{}, seen: map[string]gateSeen{}}
		ins, err := tx.Prepare(`INSERT INTO events(event_id, school_id, gate_id, direction, student_id,
			captured_at, received_at, distance, margin, frames_used, quality, model, gallery_version, face_jpeg)
			VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(event_id) DO NOTHING`)
		if err != nil {
			return fmt.Errorf("ingest: prepare: %w", err)
		}
		defer ins.Close()
		st.ins = ins
		if err := st.preloadPupils(batch); err != nil {
			return err
		}
		for _, it := range batch {
			it.res, it.stored = 0, nil
			reason, err := in.apply(st, it)
			if err != nil {
				return err
			}
			if reason != "" {
				it.res = Quarantined
				if err := quarantine(tx, it, reason); err != nil {
					return err
				}
			}
		}
		// Clock skew comes from heartbeats (sent live). Until a gate has sent
		// one, the smallest hub-minus-edge difference of its events is the
		// estimate (it includes the publish delay, so it is an upper bound).
		for gate, gs := range st.seen {
			if _, err := tx.Exec(`UPDATE gates SET last_seen_at = max(last_seen_at, ?), online = 1,
				clock_skew_ms = CASE WHEN last_heartbeat = '' THEN ? ELSE clock_skew_ms END WHERE id = ?`,
				gs.at, gs.minDelay, gate); err != nil {
				return fmt.Errorf("ingest: gate seen: %w", err)
			}
		}
		return nil
	})
}

const quarantineMax = 64 << 10

// cropField matches an event's face crop in a (possibly malformed or cut)
// JSON payload; descriptorField a face descriptor (an event's template,
// an unrecognised face's descriptor).
var (
	cropField       = regexp.MustCompile(`"face_jpeg"\s*:\s*"[^"]*"?`)
	descriptorField = regexp.MustCompile(`"descriptor"\s*:\s*("[^"]*"?|\[[^\]]*\]?)`)
)

// quarantine keeps the refused payload for diagnosis, without the face
// crop or a face descriptor: nobody's consent covers keeping them (and
// the retention job does not look in quarantine).
func quarantine(tx *sql.Tx, it *item, reason string) error {
	p := it.msg.Payload
	if len(p) > quarantineMax {
		p = p[:quarantineMax]
	}
	p = cropField.ReplaceAllLiteral(p, []byte(`"face_jpeg":"(removed)"`))
	p = descriptorField.ReplaceAllLiteral(p, []byte(`"descriptor":"(removed)"`))
	if p == nil {
		p = []byte{}
	}
	_, err := tx.Exec(`INSERT INTO quarantine(received_at, topic, client_id, reason, payload) VALUES (?,?,?,?,?)`,
		it.received, conf.Truncate(it.msg.Topic, 512, conf.Bytes, ""),
		conf.Truncate(it.msg.ClientID, 256, conf.Bytes, ""), conf.Truncate(reason, 1024, conf.Bytes, ""), p)
	if err != nil {
		return fmt.Errorf("ingest: quarantine: %w", err)
	}
	return nil
}

// apply handles one message inside the transaction. A non-empty reason
// means "quarantine"; an error aborts the transaction.
func (in *Ingester) apply(st *txState, it *item) (reason string, err error) {
	school, gate, kind, ok := wire.ParseGateTopic(it.msg.Topic)
	if !ok {
		return "topic: not a gate topic", nil
	}
	g, err := st.gate(gate)
	if err != nil {
		return "", err
	}
	switch {
	case !g.found:
		return fmt.Sprintf("gate_id: unknown gate %q", gate), nil
	case g.school != school:
		return fmt.Sprintf("gate_id: gate %q does not belong to school %q", gate, school), nil
	case !g.active:
		return fmt.Sprintf("gate_id: gate %q is not active", gate), nil
	}
	switch kind {
	case "events":
		return in.applyEvent(st, it, school, gate)
	case "status":
		return in.applyStatus(st, it, gate)
	case "heartbeat":
		return in.applyHeartbeat(st, it, gate)
	}
	if h := in.topic(kind); h != nil {
		return in.applyTopic(st, it, h, school, gate)
	}
	return fmt.Sprintf("topic: unknown kind %q", kind), nil
}

func (st *txState) gate(id string) (gateRow, error) {
	if g, ok := st.gates[id]; ok {
		return g, nil
	}
	var g gateRow
	var active int
	err := st.tx.QueryRow(`SELECT school_id, active FROM gates WHERE id = ?`, id).Scan(&g.school, &active)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return g, fmt.Errorf("ingest: gate lookup: %w", err)
	default:
		g.found, g.active = true, active == 1
	}
	st.gates[id] = g
	return g, nil
}

// preloadPupils looks up every pupil named in the batch with one query
// per 500 IDs instead of one per event.
func (st *txState) preloadPupils(batch []*item) error {
	var ids []any
	for _, it := range batch {
		if it.ev == nil || it.ev.StudentID == wire.UnknownStudent {
			continue
		}
		if _, ok := st.pupils[it.ev.StudentID]; ok {
			continue
		}
		st.pupils[it.ev.StudentID] = pupilRow{} // not found unless the query says so
		ids = append(ids, it.ev.StudentID)
	}
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), 500)]
		ids = ids[len(chunk):]
		q := `SELECT p.id, p.school_id, p.class_id, ` + audit.SnapshotsAllowed("p.id") + ` FROM pupils p WHERE p.id IN (?` +
			strings.Repeat(",?", len(chunk)-1) + `)`
		rows, err := st.tx.Query(q, chunk...)
		if err != nil {
			return fmt.Errorf("ingest: pupil lookup: %w", err)
		}
		for rows.Next() {
			var id string
			var p pupilRow
			var class sql.NullString
			if err := rows.Scan(&id, &p.school, &class, &p.snapshots); err != nil {
				rows.Close()
				return fmt.Errorf("ingest: pupil lookup: %w", err)
			}
			p.found, p.class = true, class.String
			st.pupils[id] = p
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("ingest: pupil lookup: %w", err)
		}
	}
	return nil
}

func (st *txState) pupil(id string) (pupilRow, error) {
	if p, ok := st.pupils[id]; ok {
		return p, nil
	}
	var p pupilRow
	var class sql.NullString
	err := st.tx.QueryRow(`SELECT p.school_id, p.class_id, `+audit.SnapshotsAllowed("p.id")+` FROM pupils p WHERE p.id = ?`, id).
		Scan(&p.school, &class, &p.snapshots)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return p, fmt.Errorf("ingest: pupil lookup: %w", err)
	default:
		p.found, p.class = true, class.String
	}
	st.pupils[id] = p
	return p, nil
}

// CheckEvent runs the checks that need no database: decode and contract,
// topic/payload match, clock window. It is the fuzzed decode path.
func CheckEvent(cfg Config, topic string, payload []byte, now time.Time) (*wire.Event, string) {
	ev, err := wire.DecodeEvent(payload)
	if err != nil {
		return nil, err.Error()
	}
	school, gate, kind, ok := wire.ParseGateTopic(topic)
	switch {
	case !ok || kind != "events":
		return nil, "topic: not an events topic"
	case ev.SchoolID != school:
		return nil, fmt.Sprintf("school_id: %q does not match topic school %q", ev.SchoolID, school)
	case ev.GateID != gate:
		return nil, fmt.Sprintf("gate_id: %q does not match topic gate %q", ev.GateID, gate)
	}
	if reason := cfg.clockReason(ev.CapturedAt, now); reason != "" {
		return nil, reason
	}
	return ev, ""
}

func (in *Ingester) applyEvent(st *txState, it *item, school, gate string) (string, error) {
	ev, reason := it.ev, it.reason
	if it.kind != "events" { // not decoded by Submit
		ev, reason = CheckEvent(in.cfg, it.msg.Topic, it.msg.Payload, time.UnixMilli(it.received))
	}
	if reason != "" {
		return reason, nil
	}
	se := &StoredEvent{Event: *ev, ReceivedAt: it.received, Unknown: ev.StudentID == wire.UnknownStudent}
	var student any
	// The face crop is kept only where it may be: for a pupil whose
	// consent allows snapshots (decided in this transaction), and for an
	// unknown face (no pupil, no consent to consult: kept until the
	// retention job deletes it). Listeners never see a dropped crop.
	keepCrop := se.Unknown
	if !se.Unknown {
		p, err := st.pupil(ev.StudentID)
		if err != nil {
			return "", err
		}
		if !p.found || p.school != school {
			return fmt.Sprintf("student_id: unknown pupil %q in school %q", ev.StudentID, school), nil
		}
		se.ClassID = p.class
		student = ev.StudentID
		keepCrop = p.snapshots
	}
	if !keepCrop {
		se.FaceJPEG = nil
	}
	q, _ := json.Marshal(ev.Quality)
	model := ev.Model.Name
	if ev.Model.Version != "" {
		model += "@" + ev.Model.Version
	}
	var face any
	if len(se.FaceJPEG) > 0 {
		face = se.FaceJPEG
	}
	res, err := st.ins.Exec(ev.EventID, ev.SchoolID, ev.GateID, ev.Direction, student, ev.CapturedAt, it.received,
		ev.Distance, ev.Margin, ev.FramesUsed, string(q), model, ev.GalleryVer, face)
	if err != nil {
		return "", fmt.Errorf("ingest: insert event: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return "", fmt.Errorf("ingest: insert event: %w", err)
	}
	gs := st.seen[gate]
	if it.received > gs.at {
		gs.at = it.received
	}
	if d := it.received - ev.CapturedAt; !gs.has || d < gs.minDelay {
		gs.minDelay, gs.has = d, true
	}
	st.seen[gate] = gs
	if n == 0 {
		it.res = Duplicate
		return "", nil
	}
	it.res, it.stored = Stored, se
	return "", nil
}

func (in *Ingester) applyStatus(st *txState, it *item, gate string) (string, error) {
	s, err := wire.DecodeStatus(it.msg.Payload)
	if err != nil {
		return err.Error(), nil
	}
	if s.GateID != gate {
		return fmt.Sprintf("gate_id: %q does not match topic gate %q", s.GateID, gate), nil
	}
	online := 0
	if s.Online {
		online = 1
	}
	if _, err := st.tx.Exec(`UPDATE gates SET online = ?, last_seen_at = max(last_seen_at, ?) WHERE id = ?`,
		online, it.received, gate); err != nil {
		return "", fmt.Errorf("ingest: status: %w", err)
	}
	it.res = Updated
	return "", nil
}

func (in *Ingester) applyHeartbeat(st *txState, it *item, gate string) (string, error) {
	h, err := wire.DecodeHeartbeat(it.msg.Payload)
	if err != nil {
		return err.Error(), nil
	}
	if h.GateID != gate {
		return fmt.Sprintf("gate_id: %q does not match topic gate %q", h.GateID, gate), nil
	}
	js, _ := json.Marshal(h)
	skew := it.received - h.At
	if _, err := st.tx.Exec(`UPDATE gates SET online = 1, last_seen_at = max(last_seen_at, ?), last_heartbeat = ?,
		clock_skew_ms = ? WHERE id = ?`, it.received, string(js), skew, gate); err != nil {
		return "", fmt.Errorf("ingest: heartbeat: %w", err)
	}
	it.res = Updated
	return "", nil
}

// join makes "prefix.name" ("name" when prefix is empty).
func join(prefix, name string) string {
	prefix = strings.TrimSuffix(prefix, ".")
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}
