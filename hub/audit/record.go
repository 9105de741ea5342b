package audit

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/match"
)

// DataItem is one category of personal data in the processing record.
type DataItem struct {
	Category  string `json:"category"`
	Where     string `json:"where"`
	Protected string `json:"protection"`
	Retention string `json:"retention"`
	WhoSees   string `json:"who_can_see"`
	Count     int64  `json:"count"`
}

// ProcessingRecord is the data-processing record (hồ sơ xử lý dữ liệu cá
// nhân) a school attaches to its impact assessment.
type ProcessingRecord struct {
	GeneratedAt       string     `json:"generated_at"`
	Controller        string     `json:"controller"`
	Purpose           string     `json:"purpose"`
	LegalBasis        string     `json:"legal_basis"`
	Schools           []string   `json:"schools"`
	Items             []DataItem `json:"items"`
	ConsentsValid     int64      `json:"consents_valid"`
	ConsentsWithdrawn int64      `json:"consents_withdrawn"`
	ManualPupils      int64      `json:"pupils_on_manual_attendance"`
	// GateTemplates says whether gate captures may be kept as face
	// templates, in Vietnamese and English.
	GateTemplates GateTemplatesNote `json:"gate_captures_as_templates"`
	Recipients    string            `json:"recipients"`
	Transfers     string            `json:"transfers_abroad"`
}

// ProcessingRecord builds the record from the live database, for the
// schools of sc: the whole hub, or one school (its pupils, guardians,
// templates, events, accounts, consents and audit entries only).
func (l *Log) ProcessingRecord(ctx context.Context, retentionDays int, sc Scope) (*ProcessingRecord, error) {
	if !sc.valid() {
		return nil, fmt.Errorf("audit: record: %w", errNoScope)
	}
	count := func(q, col string, pupil bool) int64 {
		cond, args := sc.where(col, pupil)
		var n int64
		_ = l.db.R.QueryRowContext(ctx, q+" AND "+cond, args...).Scan(&n)
		return n
	}
	rec := &ProcessingRecord{
		GeneratedAt:       l.now().UTC().Format(time.RFC3339),
		Controller:        "the school operating this hub",
		Purpose:           "recording pupils' arrival and departure at the school gate (điểm danh) and informing their guardians",
		LegalBasis:        "written consent of the parent or guardian, and of the pupil from age 7 (Decree 13/2023/NĐ-CP art. 20; Law 91/2025/QH15)",
		Items:             dataItems(l.models(ctx, sc), retentionDays, count),
		ConsentsValid:     count(`SELECT count(*) FROM consents WHERE withdrawn_at IS NULL`, "pupil_id", true),
		ConsentsWithdrawn: count(`SELECT count(*) FROM consents WHERE withdrawn_at IS NOT NULL`, "pupil_id", true),
		ManualPupils:      count(`SELECT count(*) FROM pupils WHERE manual_attendance = 1`, "school_id", false),
		GateTemplates:     gateTemplatesNote(count(`SELECT count(*) FROM pupils WHERE `+gateScopeInForce, "school_id", false)),
		Recipients:        "guardians receive arrival notifications through the channels they chose; the city education database receives attendance status when enabled (no biometrics)",
		Transfers:         "none: all data stays on the school's hub",
	}
	cond, args := sc.where("id", false)
	schools, err := store.Strings(ctx, l.db.R, `SELECT id FROM schools WHERE `+cond+` ORDER BY id`, args...)
	if err != nil {
		return nil, fmt.Errorf("audit: record: %w", err)
	}
	rec.Schools = schools
	return rec, nil
}

// GateTemplatesNote is the processing record's statement on gate captures
// kept as face templates (hub/facetemplates' gate templates).
type GateTemplatesNote struct {
	PupilsAllowing int64  `json:"pupils_allowing"` // pupils whose consent in force allows it
	VI             string `json:"vi"`
	EN             string `json:"en"`
}

// gateScopeInForce is the condition "the consent in force of the pupils
// row allows gate templates", as facetemplates.GateTemplatesAllowed
// defines it.
const gateScopeInForce = `COALESCE((SELECT c.scope_face = 1 AND c.scope_gate_templates = 1 FROM consents c
	WHERE c.pupil_id = pupils.id AND c.withdrawn_at IS NULL ORDER BY c.given_at DESC, c.id DESC LIMIT 1), 0) = 1`

func gateTemplatesNote(n int64) GateTemplatesNote {
	return GateTemplatesNote{PupilsAllowing: n,
		VI: fmt.Sprintf("Ảnh chụp khuôn mặt ở cổng trường chỉ được giữ làm mẫu khuôn mặt khi sự đồng ý đang có hiệu lực cho phép (%d học sinh). "+
			"Mẫu được mã hoá, có thời hạn, và bị xoá ngay khi gia đình rút lại phạm vi này hoặc rút lại sự đồng ý.", n),
		EN: fmt.Sprintf("Gate captures are kept as face templates only where the consent in force allows it (%d pupils). "+
			"They are encrypted, expire, and are erased at once when the family withdraws that scope or the consent.", n)}
}

// models returns the embedders whose templates are stored in scope (the
// configured default when there are none yet).
func (l *Log) models(ctx context.Context, sc Scope) []string {
	cond, args := sc.where("pupil_id", true)
	models, err := store.Strings(ctx, l.db.R, `SELECT DISTINCT model FROM face_templates WHERE `+cond+` ORDER BY model`, args...)
	if err != nil || len(models) == 0 {
		models = []string{match.DefaultEmbedder.String()}
	}
	return models
}

// dataItems lists the categories of personal data; count(query, column,
// pupil) counts rows in scope, column being a school ID (pupil false) or
// a pupil ID (pupil true).
func dataItems(models []string, retentionDays int, count func(q, col string, pupil bool) int64) []DataItem {
	return []DataItem{
		{"roster: pupil name, 12-digit personal ID, class, date of birth", "hub SQLite database (pupils)", "hub host only; API behind accounts and roles", "while the pupil attends the school", "admins; teachers for their classes; parents for their own children", count(`SELECT count(*) FROM pupils WHERE 1=1`, "school_id", false)},
		{"guardian contact: name, phone, e-mail", "hub SQLite database (guardians)", "as above", "while the pupil attends", "admins; homeroom teachers", count(`SELECT count(*) FROM guardians WHERE 1=1`, "pupil_id", true)},
		{"face templates (biometric descriptors, " + strings.Join(models, ", ") + ")", "hub SQLite database (face_templates); copies in each gate's gallery file", "AES-256-GCM at rest, key outside the database; gates fetch over authenticated HTTP", "until consent is withdrawn or the pupil leaves; deleted at once on withdrawal", "no person views them; gates of the pupil's school use them", count(`SELECT count(*) FROM face_templates WHERE 1=1`, "pupil_id", true)},
		{"face templates from gate captures (confirmed by a teacher or added automatically)", "hub SQLite database (face_templates, source teacher or automatic); copies in each gate's gallery file", "AES-256-GCM at rest, as enrolment templates; the capture itself only where consent allows keeping photos", "only where the consent allows keeping gate captures as templates; a few per pupil and source, each expires; erased at once when that scope or the consent is withdrawn", "no person views them; gates of the pupil's school use them", count(`SELECT count(*) FROM face_templates WHERE source != 'enrolment'`, "pupil_id", true)},
		{"faces the gates did not recognise: face crop, its descriptor, the nearest pupils", "hub SQLite database (unrecognised_faces)", "crop and descriptor AES-256-GCM at rest under the template key; every crop view is audited; never sent to the city database", "the review retention (hub.yaml review.retention, 7 days by default), then deleted", "teachers for the gates serving their classes; admins", count(`SELECT count(*) FROM unrecognised_faces WHERE 1=1`, "school_id", false)},
		{"enrolment photos", "hub SQLite database (face_templates.photo)", "AES-256-GCM at rest; every view is audited", "only where consent allows keeping photos; deleted on withdrawal", "admins", count(`SELECT count(*) FROM face_templates WHERE photo IS NOT NULL`, "pupil_id", true)},
		{"gate events (time, gate, recognised pupil, distance)", "hub SQLite database (events)", "hub host only", "school year", "admins; teachers for their classes; parents for their own children", count(`SELECT count(*) FROM events WHERE 1=1`, "school_id", false)},
		{"gate face crops of events", "hub SQLite database (events.face_jpeg)", "hub host only", fmt.Sprintf("%d days, then deleted by the retention job; not kept when consent excludes snapshots", retentionDays), "admins; teachers for their classes", count(`SELECT count(*) FROM events WHERE face_jpeg IS NOT NULL`, "school_id", false)},
		{"accounts and sessions", "hub SQLite database (accounts, sessions)", "bcrypt password hashes; session tokens stored hashed", "while the account exists", "admins", count(`SELECT count(*) FROM accounts WHERE 1=1`, "school_id", false)},
		{"audit log", "hub SQLite database (audit_log)", "append-only (database triggers)", "kept for inspection", "admins", count(`SELECT count(*) FROM audit_log WHERE 1=1`, "school_id", false)},
	}
}

// SnapshotsAllowed returns the SQL condition "the consent of the pupil
// whose ID is the SQL expression pupil allows keeping gate face crops":
// the pupil's current consent — the latest one not withdrawn, ordered as
// consent.Registry.Current orders them (given_at, then id) — has
// scope_snapshots = 1. No consent, only withdrawn ones, or a current one
// without snapshots: not allowed (a later consent that drops snapshots
// overrides an earlier one that had them).
//
// It is the one definition of the rule, used where a crop is stored
// (hub/ingest, in the event's transaction), served (the teacher's crop
// page), removed on a consent change (hub/consent) and by Retention, so
// these cannot drift apart. pupil must be a column or "?", never user
// text.
func SnapshotsAllowed(pupil string) string {
	return `COALESCE((SELECT c.scope_snapshots FROM consents c WHERE c.pupil_id = ` + pupil + ` AND c.withdrawn_at IS NULL
		ORDER BY c.given_at DESC, c.id DESC LIMIT 1), 0) = 1`
}

// Retention deletes gate face crops: those older than days, and those of
// pupils whose consent does not allow snapshots (SnapshotsAllowed). Ingest
// never stores the latter and a consent change deletes them at once; the
// job is the backstop.
type Retention struct {
	Log      *Log
	Days     int
	Interval time.Duration
	slog     *slog.Logger
}

// NewRetention returns the job (days ≤ 0 means the default 30).
func NewRetention(l *Log, days int, interval time.Duration) *Retention {
	if days <= 0 {
		days = 30
	}
	if interval <= 0 {
		interval = time.Hour
	}
	return &Retention{Log: l, Days: days, Interval: interval, slog: l.log}
}

// RunOnce deletes what is due and returns how many crops were removed.
func (r *Retention) RunOnce(ctx context.Context) (int64, error) {
	cutoff := r.Log.now().Add(-time.Duration(r.Days) * 24 * time.Hour).UnixMilli()
	var n int64
	err := r.Log.db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE events SET face_jpeg = NULL WHERE face_jpeg IS NOT NULL AND (received_at < ?
			OR (student_id IS NOT NULL AND NOT (`+SnapshotsAllowed("events.student_id")+`)))`, cutoff)
		if err != nil {
			return fmt.Errorf("audit: retention: %w", err)
		}
		n, _ = res.RowsAffected()
		if n == 0 {
			return nil
		}
		return r.Log.RecordTx(ctx, tx, "system", ActionRetention, "events.face_jpeg", map[string]any{"deleted": n, "older_than_days": r.Days}, "")
	})
	return n, err
}

// Run repeats RunOnce every Interval until ctx ends.
func (r *Retention) Run(ctx context.Context) error {
	t := time.NewTicker(r.Interval)
	defer t.Stop()
	for {
		if n, err := r.RunOnce(ctx); err != nil {
			r.slog.Warn("retention failed", "err", err)
		} else if n > 0 {
			r.slog.Info("retention deleted face crops", "count", n)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Config is the audit/retention section of the hub config.
type Config struct {
	// RetentionDays: gate face crops older than this are deleted.
	RetentionDays int `yaml:"retention_days"`
}

// DefaultConfig returns the defaults (30 days).
func DefaultConfig() Config { return Config{RetentionDays: 30} }

// Validate names the first bad field under prefix.
func (c Config) Validate(prefix string) error {
	if c.RetentionDays < 1 || c.RetentionDays > 3650 {
		return conf.Fieldf(prefix+".retention_days", "must be 1..3650, got %d", c.RetentionDays)
	}
	return nil
}
