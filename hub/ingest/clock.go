package ingest

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/models/wire"
)

// ClockCorrectMin is the smallest measured gate clock offset ingest
// corrects event times by: below it the offset is mostly network delay.
const ClockCorrectMin = 5 * time.Second

// Audit actions of gate alarms (subject gate:<id>, actor system).
const (
	ActionGateClockSkew = "gate_clock_skew" // the gate's clock is off by more than ingest.clock_skew_warn
	ActionGateClockOK   = "gate_clock_ok"   // back within it
	ActionGateDiskFull  = "gate_disk_full"  // the gate's outbox refuses new events: its disk is full
	ActionGateDiskOK    = "gate_disk_ok"    // it stores events again
)

// SetAudit makes ingest record gate alarms (clock skew, full disk) in the
// audit log, in the transaction of the heartbeat that raised or cleared
// them. Call it before Start.
func (in *Ingester) SetAudit(l *audit.Log) { in.audit = l }

// offset is what ingest adds to a gate's capture times to put them on the
// hub's clock: the offset last measured from a live message of the gate
// (online status, heartbeat) when it is at least ClockCorrectMin, else 0.
// Event-based estimates (which hold the publish delay) are never used.
func (g gateRow) offset() int64 {
	if !g.measured || (g.skewMs < ClockCorrectMin.Milliseconds() && g.skewMs > -ClockCorrectMin.Milliseconds()) {
		return 0
	}
	return g.skewMs
}

// measureClock records the offset between the hub's clock (received)
// and the gate's (at) that a live message (the gate's online status, a
// heartbeat) shows, updates the gate's clock warning, and logs and audits
// a warning raised or cleared.
func (in *Ingester) measureClock(st *txState, gate string, received, at int64) error {
	skew := received - at
	var prev bool
	if err := st.tx.QueryRow(`SELECT clock_warn FROM gates WHERE id = ?`, gate).Scan(&prev); err != nil {
		return fmt.Errorf("ingest: clock: %w", err)
	}
	warn := skew > in.cfg.ClockSkewWarn.Milliseconds() || skew < -in.cfg.ClockSkewWarn.Milliseconds()
	if _, err := st.tx.Exec(`UPDATE gates SET clock_skew_ms = ?, clock_measured_at = ?, clock_warn = ? WHERE id = ?`,
		skew, received, warn, gate); err != nil {
		return fmt.Errorf("ingest: clock: %w", err)
	}
	if g, ok := st.gates[gate]; ok {
		g.skewMs, g.measured = skew, true
		st.gates[gate] = g
	}
	d := (time.Duration(skew) * time.Millisecond).String()
	switch {
	case warn && !prev:
		in.log.Warn("gate clock off: its event times are corrected by the measured offset; fix its time sync (NTP)",
			"gate_id", gate, "clock_skew", d, "warn_over", in.cfg.ClockSkewWarn)
		return in.record(st.tx, ActionGateClockSkew, gate, map[string]any{"clock_skew_ms": skew, "warn_over_ms": in.cfg.ClockSkewWarn.Milliseconds()})
	case !warn && prev:
		in.log.Info("gate clock back in step", "gate_id", gate, "clock_skew", d)
		return in.record(st.tx, ActionGateClockOK, gate, map[string]any{"clock_skew_ms": skew})
	}
	return nil
}

// diskAlarm logs and audits a gate's full disk raised or cleared by h
// against the gate's previous heartbeat (prevJSON).
func (in *Ingester) diskAlarm(tx *sql.Tx, gate, prevJSON string, h *wire.Heartbeat) error {
	var prev wire.Heartbeat
	if prevJSON != "" && json.Unmarshal([]byte(prevJSON), &prev) != nil {
		prev = wire.Heartbeat{}
	}
	switch {
	case h.DiskFull && !prev.DiskFull:
		in.log.Error("gate disk full: the gate refuses new events until space is freed on it",
			"gate_id", gate, "outbox_depth", h.OutboxDepth, "outbox_refused", h.OutboxRefused)
		return in.record(tx, ActionGateDiskFull, gate, map[string]any{"outbox_depth": h.OutboxDepth, "outbox_refused": h.OutboxRefused})
	case !h.DiskFull && prev.DiskFull:
		in.log.Info("gate disk space back: the gate stores events again", "gate_id", gate, "outbox_refused", h.OutboxRefused)
		return in.record(tx, ActionGateDiskOK, gate, map[string]any{"outbox_refused": h.OutboxRefused})
	}
	return nil
}

// record audits a gate alarm (when SetAudit was called).
func (in *Ingester) record(tx *sql.Tx, action, gate string, detail map[string]any) error {
	if in.audit == nil {
		return nil
	}
	if err := in.audit.RecordTx(context.WithoutCancel(in.ctx), tx, "system", action, "gate:"+gate, detail, ""); err != nil {
		return fmt.Errorf("ingest: gate alarm: %w", err)
	}
	return nil
}
