package ingest

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/wire"
)

// gateRow is a gate as one ingest transaction sees it.
type gateRow struct {
	school string
	active bool
	found  bool
	// skewMs is hub minus gate clock; measured: it comes from a heartbeat.
	skewMs   int64
	measured bool
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
			captured_at, gate_captured_at, received_at, distance, margin, frames_used, quality, model, gallery_version, face_jpeg)
			VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(event_id) DO NOTHING`)
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
		// Clock skew is measured from live messages (online status,
		// heartbeats). Until a gate has sent one, the smallest hub-minus-edge
		// difference of its events is the estimate (it includes the publish
		// delay, so it is an upper bound), never used to correct times.
		for gate, gs := range st.seen {
			if _, err := tx.Exec(`UPDATE gates SET last_seen_at = max(last_seen_at, ?), online = 1,
				clock_skew_ms = CASE WHEN clock_measured_at = 0 THEN ? ELSE clock_skew_ms END WHERE id = ?`,
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
	err := st.tx.QueryRow(`SELECT school_id, active, clock_skew_ms, clock_measured_at > 0 FROM gates WHERE id = ?`, id).
		Scan(&g.school, &active, &g.skewMs, &g.measured)
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
// topic/payload match, clock window (on the gate's clock as sent). It is
// the fuzzed decode path.
func CheckEvent(cfg Config, topic string, payload []byte, now time.Time) (*wire.Event, string) {
	ev, reason := checkEventShape(topic, payload)
	if reason != "" {
		return nil, reason
	}
	if reason := cfg.clockReason(ev.CapturedAt, now); reason != "" {
		return nil, reason
	}
	return ev, ""
}

// checkEventShape is CheckEvent without the clock window, which ingest
// applies in the transaction to the time corrected by the gate's
// measured clock offset.
func checkEventShape(topic string, payload []byte) (*wire.Event, string) {
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
	return ev, ""
}

func (in *Ingester) applyEvent(st *txState, it *item, school, gate string) (string, error) {
	ev, reason := it.ev, it.reason
	if it.kind != "events" { // not decoded by Submit
		ev, reason = checkEventShape(it.msg.Topic, it.msg.Payload)
	}
	if reason != "" {
		return reason, nil
	}
	g, err := st.gate(gate)
	if err != nil {
		return "", err
	}
	captured := ev.CapturedAt + g.offset() // on the hub's clock
	if reason := in.cfg.clockReason(captured, time.UnixMilli(it.received)); reason != "" {
		return reason, nil
	}
	se := &StoredEvent{Event: *ev, ReceivedAt: it.received, GateCapturedAt: ev.CapturedAt, Unknown: ev.StudentID == wire.UnknownStudent}
	se.CapturedAt = captured
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
	res, err := st.ins.Exec(ev.EventID, ev.SchoolID, ev.GateID, ev.Direction, student, captured, ev.CapturedAt, it.received,
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
	// A gate publishes its online status on connecting, before it sends
	// its outbox: its clock is measured before its events are stored.
	if s.Online && s.At > 0 {
		if err := in.measureClock(st, gate, it.received, s.At); err != nil {
			return "", err
		}
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
	var prev string
	if err := st.tx.QueryRow(`SELECT last_heartbeat FROM gates WHERE id = ?`, gate).Scan(&prev); err != nil {
		return "", fmt.Errorf("ingest: heartbeat: %w", err)
	}
	if _, err := st.tx.Exec(`UPDATE gates SET online = 1, last_seen_at = max(last_seen_at, ?), last_heartbeat = ? WHERE id = ?`,
		it.received, string(js), gate); err != nil {
		return "", fmt.Errorf("ingest: heartbeat: %w", err)
	}
	if err := in.measureClock(st, gate, it.received, h.At); err != nil {
		return "", err
	}
	if err := in.diskAlarm(st.tx, gate, prev, h); err != nil {
		return "", err
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
