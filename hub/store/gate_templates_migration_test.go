package store

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"
)

// TestGateTemplatesMigrationKeepsExistingRows: a database migrated up to
// the migration before 0410_gate_templates, with a consent and a face
// template in it, opens with the consent's gate-template scope off and
// the template an enrolment template (no event, no expiry); the new
// tables exist and are empty.
func TestGateTemplatesMigrationKeepsExistingRows(t *testing.T) {
	ctx := context.Background()
	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "before.db")
	raw, err := sql.Open("sqlite3", DSN(path, false))
	if err != nil {
		t.Fatal(err)
	}
	raw.SetMaxOpenConns(1)
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := raw.Exec(q, args...); err != nil {
			t.Fatalf("%v\n%s", err, q)
		}
	}
	exec(oldTableSQL)
	found := false
	for _, m := range ms {
		if m.Version >= 410 {
			found = found || m.Name == "0410_gate_templates.sql"
			continue
		}
		exec(m.SQL)
		exec(`INSERT INTO schema_migrations(version, name, applied_at) VALUES (?, ?, ?)`, m.Version, m.Name, time.Now().UTC().Format(time.RFC3339))
	}
	if !found {
		t.Fatal("migration 0410_gate_templates.sql not found")
	}
	exec(`INSERT INTO schools(id, name) VALUES ('s1', 'Trường A')`)
	exec(`INSERT INTO pupils(id, school_id, full_name) VALUES ('000000000001', 's1', 'An')`)
	exec(`INSERT INTO consents(pupil_id, guardian_name, pupil_consented, scope_face, scope_photos, scope_snapshots, document_ref, given_at, recorded_by)
		VALUES ('000000000001', 'Mẹ', 1, 1, 1, 1, 'DK-1', 1, 'admin:root')`)
	exec(`INSERT INTO face_templates(pupil_id, model, descriptor, created_at) VALUES ('000000000001', 'sface@1', x'00', 1)`)
	raw.Close()

	db, err := Open(ctx, path, nil)
	if err != nil {
		t.Fatalf("open a database from before the migration: %v", err)
	}
	defer db.Close()
	checks := []struct {
		name, query string
		want        string
	}{
		{"consent scope", `SELECT scope_gate_templates || '/' || scope_photos FROM consents`, "0/1"},
		{"template source", `SELECT source || '/' || (event_id IS NULL) || '/' || (expires_at IS NULL) FROM face_templates`, "enrolment/1/1"},
		{"pauses", `SELECT count(*) FROM gate_template_pauses`, "0"},
		{"school policies", `SELECT count(*) FROM consent_policies`, "0"},
	}
	for _, c := range checks {
		var got string
		if err := db.R.QueryRow(c.query).Scan(&got); err != nil || got != c.want {
			t.Errorf("%s: %q (%v), want %q", c.name, got, err, c.want)
		}
	}
	if _, err := db.W.Exec(`INSERT INTO face_templates(pupil_id, model, descriptor, created_at, source) VALUES ('000000000001', 'sface@1', x'00', 2, 'camera')`); err == nil {
		t.Error("a template of an unknown source was stored")
	}
}
