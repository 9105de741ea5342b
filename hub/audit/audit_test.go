package audit

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/store"
)

func open(t *testing.T) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "hub.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestAppendOnly(t *testing.T) {
	db := open(t)
	ctx := context.Background()
	l := New(db, nil, nil)
	if err := l.Record(ctx, "admin:root", ActionPhotoView, "pupil:000000000001", map[string]any{"template_id": 3}, "10.0.0.1"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.W.Exec(`UPDATE audit_log SET actor = 'someone-else'`); err == nil || !strings.Contains(err.Error(), "append-only") {
		t.Fatalf("UPDATE allowed: %v", err)
	}
	if _, err := db.W.Exec(`DELETE FROM audit_log`); err == nil || !strings.Contains(err.Error(), "append-only") {
		t.Fatalf("DELETE allowed: %v", err)
	}
	es, err := l.List(ctx, Filter{Scope: Scope{All: true}, Subject: "pupil:000000000001"})
	if err != nil || len(es) != 1 || es[0].Actor != "admin:root" || es[0].Action != ActionPhotoView || es[0].IP != "10.0.0.1" {
		t.Fatalf("entries %+v %v", es, err)
	}
	var d map[string]any
	if json.Unmarshal(es[0].Detail, &d) != nil || d["template_id"] != float64(3) {
		t.Fatalf("detail %s", es[0].Detail)
	}
}

func TestRetentionAndProcessingRecord(t *testing.T) {
	db := open(t)
	ctx := context.Background()
	now := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	l := New(db, nil, func() time.Time { return now })
	old := now.Add(-31 * 24 * time.Hour).UnixMilli()
	recent := now.Add(-2 * 24 * time.Hour).UnixMilli()
	for _, q := range []string{
		`INSERT INTO schools(id, name) VALUES ('s1', 'A')`,
		`INSERT INTO pupils(id, school_id, full_name) VALUES ('000000000001', 's1', 'An'), ('000000000002', 's1', 'Bình')`,
		`INSERT INTO consents(pupil_id, guardian_name, pupil_consented, scope_face, scope_snapshots, document_ref, given_at, recorded_by)
			VALUES ('000000000001', 'Mẹ', 1, 1, 1, 'DK-1', 0, 'x'), ('000000000002', 'Bố', 1, 1, 0, 'DK-2', 0, 'x')`,
	} {
		if _, err := db.W.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	ins := func(id, pupil string, at int64) {
		var p any
		if pupil != "" {
			p = pupil
		}
		if _, err := db.W.Exec(`INSERT INTO events(event_id, school_id, gate_id, direction, student_id, captured_at, received_at, distance, margin, frames_used, model, face_jpeg)
			VALUES (?, 's1', 'g1', 'in', ?, ?, ?, 0.3, 0.1, 3, 'm@1', x'ffd8ffd9')`, id, p, at, at); err != nil {
			t.Fatal(err)
		}
	}
	ins("old-1", "000000000001", old)    // past retention: deleted
	ins("new-1", "000000000001", recent) // snapshots allowed, recent: kept
	ins("new-2", "000000000002", recent) // consent excludes snapshots: deleted
	ins("new-unknown", "", recent)       // unknown face, recent: kept
	r := NewRetention(l, 0, 0)
	if r.Days != 30 {
		t.Fatalf("default retention %d", r.Days)
	}
	n, err := r.RunOnce(ctx)
	if err != nil || n != 2 {
		t.Fatalf("retention deleted %d, %v; want 2", n, err)
	}
	rows, _ := db.R.Query(`SELECT event_id FROM events WHERE face_jpeg IS NOT NULL ORDER BY event_id`)
	var kept []string
	for rows.Next() {
		var id string
		rows.Scan(&id)
		kept = append(kept, id)
	}
	rows.Close()
	if strings.Join(kept, ",") != "new-1,new-unknown" {
		t.Fatalf("kept crops %v", kept)
	}
	if n, _ := r.RunOnce(ctx); n != 0 {
		t.Fatalf("second run deleted %d", n)
	}
	es, _ := l.List(ctx, Filter{Scope: Scope{All: true}, Action: ActionRetention})
	if len(es) != 1 {
		t.Fatalf("retention audited %d times", len(es))
	}
	rec, err := l.ProcessingRecord(ctx, 30, Scope{All: true})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(rec)
	for _, want := range []string{"AES-256-GCM", "30 days", "face templates", "Decree 13/2023", `"consents_valid":2`, `"schools":["s1"]`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("processing record lacks %q: %s", want, b)
		}
	}
	if err := (Config{RetentionDays: 0}).Validate("audit"); err == nil || !strings.Contains(err.Error(), "audit.retention_days") {
		t.Fatalf("validate: %v", err)
	}
}
