package consent_test

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/edge/gallery"
	"github.com/diemdanh/diemdanh/hub/app"
	"github.com/diemdanh/diemdanh/hub/auth"
	"github.com/diemdanh/diemdanh/hub/consent"
	"github.com/diemdanh/diemdanh/hub/roster"
	"github.com/diemdanh/diemdanh/models/match"
)

// TestWithdrawalLeavesRunningEdgeWithin10s runs the whole hub (HTTP
// server, gallery server, embedded broker) and an edge's gallery syncer
// (edge/gallery.Sync, as the gate process runs it) against it; withdrawing
// consent through the API must take the pupil out of the edge's gallery
// within 10 s, delete every template and put the pupil on manual
// attendance.
func TestWithdrawalLeavesRunningEdgeWithin10s(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := app.Default()
	cfg.DataDir = t.TempDir()
	cfg.HTTP.Addr = "127.0.0.1:0"
	cfg.Broker.Listen = "127.0.0.1:0"
	cfg.Auth.BcryptCost = 4
	a, err := app.New(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- a.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case <-runErr:
		case <-time.After(15 * time.Second):
			t.Error("hub did not stop")
		}
	}()
	const pupil, other = "000000000777", "000000000778"
	for _, q := range []string{
		`INSERT INTO schools(id, name) VALUES ('s1', 'Tiểu học B')`,
		`INSERT INTO pupils(id, school_id, full_name, date_of_birth) VALUES ('000000000777', 's1', 'Phạm Cúc', '2018-02-03'), ('000000000778', 's1', 'Vũ Dũng', '2021-01-01')`,
	} {
		if _, err := a.DB.W.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	rs := roster.New(a.DB, nil, nil)
	rs.BcryptCost = 4
	creds, err := rs.CreateGate(ctx, roster.Gate{ID: "g1", SchoolID: "s1", Direction: "in"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := a.Mods.Auth.CreateAccount(ctx, "test", auth.NewAccount{Username: "root", Password: "admin-password", Role: auth.RoleAdmin}); err != nil {
		t.Fatal(err)
	}
	// Pupil 777 is 8: their own consent is recorded with the guardian's.
	for _, g := range []consent.Grant{
		{PupilID: pupil, GuardianName: "Phạm Mẹ", PupilConsented: true, ScopeFace: true, ScopeSnapshots: true, DocumentRef: "DK-777"},
		{PupilID: other, GuardianName: "Vũ Bố", ScopeFace: true, DocumentRef: "DK-778"},
	} {
		if _, err := a.Mods.Consent.Record(ctx, "admin:root", g); err != nil {
			t.Fatal(err)
		}
	}
	// A recent gate crop of pupil 777, kept under the consent's snapshot
	// scope (after the consent, so neither ingest's rule nor the retention
	// job would have dropped it): the withdrawal must delete it.
	if _, err := a.DB.W.Exec(`INSERT INTO events(event_id, school_id, gate_id, direction, student_id, captured_at, received_at, distance, margin, frames_used, model, face_jpeg)
		VALUES ('e-1', 's1', 'g1', 'in', '000000000777', ?, ?, 0.3, 0.1, 3, 'dlib-resnet-v1@1', x'ffd8ffd9')`, time.Now().UnixMilli(), time.Now().UnixMilli()); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(7, 7))
	for _, p := range []string{pupil, pupil, other} {
		d := make(match.Descriptor, match.DescriptorLen)
		for i := range d {
			d[i] = float32(r.NormFloat64() * 0.1)
		}
		if _, err := a.Mods.Templates.Add(ctx, p, d, a.Mods.Templates.Model(), match.Quality{SizePx: 150}, nil); err != nil { // the hub's configured model
			t.Fatal(err)
		}
	}

	// The edge's gallery syncer, as the gate runs it.
	st, err := gallery.NewStore(filepath.Join(t.TempDir(), "gallery.json"), nil)
	if err != nil {
		t.Fatal(err)
	}
	scfg := gallery.DefaultSyncConfig()
	scfg.HubURL, scfg.GateID, scfg.Username, scfg.Password = a.BaseURL(), "g1", creds.Username, creds.Password
	scfg.Interval, scfg.RetryMax, scfg.Timeout = time.Second, time.Second, 5*time.Second
	sy, err := gallery.NewSync(scfg, st, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	go sy.Run(ctx)
	has := func(id string) bool {
		_, g := st.Current()
		return g != nil && len(g.Descriptors(id)) > 0
	}
	waitFor := func(what string, cond func() bool, limit time.Duration) time.Duration {
		start := time.Now()
		for !cond() {
			if time.Since(start) > limit {
				t.Fatalf("%s: not within %v", what, limit)
			}
			time.Sleep(50 * time.Millisecond)
		}
		return time.Since(start)
	}
	waitFor("pupil in the edge's gallery", func() bool { return has(pupil) && has(other) }, 15*time.Second)

	req, _ := http.NewRequest("POST", a.BaseURL()+"/api/v1/pupils/"+pupil+"/consent/withdraw", strings.NewReader(`{"reason":"gia đình rút lại đồng ý"}`))
	req.SetBasicAuth("root", "admin-password")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"templates_deleted":2`) || !strings.Contains(string(b), `"crops_deleted":1`) {
		t.Fatalf("withdraw: %d %s", resp.StatusCode, b)
	}
	took := waitFor("pupil gone from the running edge", func() bool { return !has(pupil) }, 10*time.Second)
	t.Logf("pupil left the edge's gallery %v after the withdrawal", took.Round(time.Millisecond))
	if !has(other) {
		t.Fatal("the other pupil left the gallery too")
	}
	var templates, manual, withdrawn, crops, audited int
	a.DB.R.QueryRow(`SELECT count(*) FROM face_templates WHERE pupil_id = ?`, pupil).Scan(&templates)
	a.DB.R.QueryRow(`SELECT manual_attendance FROM pupils WHERE id = ?`, pupil).Scan(&manual)
	a.DB.R.QueryRow(`SELECT count(*) FROM consents WHERE pupil_id = ? AND withdrawn_at IS NOT NULL`, pupil).Scan(&withdrawn)
	a.DB.R.QueryRow(`SELECT count(*) FROM events WHERE student_id = ? AND face_jpeg IS NOT NULL`, pupil).Scan(&crops)
	a.DB.R.QueryRow(`SELECT count(*) FROM audit_log WHERE action = 'consent_withdrawn' AND subject = ? AND actor = 'admin:root'`, "pupil:"+pupil).Scan(&audited)
	if templates != 0 || manual != 1 || withdrawn != 1 || crops != 0 || audited != 1 {
		t.Fatalf("after withdrawal: templates=%d manual=%d withdrawn=%d crops=%d audited=%d", templates, manual, withdrawn, crops, audited)
	}
	// No enrolment without a valid consent any more.
	if _, err := a.Mods.Enrol.Prepare(ctx, pupil); err == nil {
		t.Fatal("pupil can still be enrolled after withdrawal")
	}
}
