package consent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/auth"
	"github.com/diemdanh/diemdanh/hub/consent"
	"github.com/diemdanh/diemdanh/hub/facetemplates"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/match"
)

const (
	gsPupil = "000000000901" // school s1, 8 years old
	gsOther = "000000000902" // school s1
	gsB     = "000000000903" // school s2
)

// scopeFixture: a real SQLite database with schools s1 and s2, the
// encrypted template store and the consent registry.
type scopeFixture struct {
	db       *store.DB
	tpl      *facetemplates.Store
	reg      *consent.Registry
	r        *rand.Rand
	notified map[string]int64
}

func newScopeFixture(t *testing.T) *scopeFixture {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "hub.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	for _, q := range []string{
		`INSERT INTO schools(id, name) VALUES ('s1', 'Tiểu học A'), ('s2', 'Tiểu học B')`,
		`INSERT INTO pupils(id, school_id, full_name, date_of_birth) VALUES ('000000000901', 's1', 'Lê Hà', '2018-02-03'),
			('000000000902', 's1', 'Vũ Dũng', '2018-05-06'), ('000000000903', 's2', 'Đỗ Mai', '2018-07-08')`,
	} {
		if _, err := db.W.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	tpl, err := facetemplates.Open(db, bytes.Repeat([]byte{9}, facetemplates.KeySize), nil, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	f := &scopeFixture{db: db, tpl: tpl, reg: consent.New(db, tpl, audit.New(db, nil, time.Now), nil, time.Now),
		r: rand.New(rand.NewPCG(7, 8)), notified: map[string]int64{}}
	tpl.Subscribe(func(school string, v int64) { f.notified[school] = v })
	return f
}

func (f *scopeFixture) grant(t *testing.T, pupil string, gate *bool) consent.Consent {
	t.Helper()
	ctx := context.Background()
	if _, err := f.reg.Record(ctx, "admin:root", consent.Grant{PupilID: pupil, GuardianName: "Mẹ", PupilConsented: true,
		ScopeFace: true, ScopePhotos: true, ScopeGateTemplates: gate, DocumentRef: "DK-" + pupil}); err != nil {
		t.Fatal(err)
	}
	c, err := f.reg.Current(ctx, pupil)
	if err != nil {
		t.Fatal(err)
	}
	return *c
}

func (f *scopeFixture) desc() match.Descriptor {
	d := make(match.Descriptor, match.DescriptorLen)
	for i := range d {
		d[i] = float32(f.r.NormFloat64() * 0.1)
	}
	return d
}

func (f *scopeFixture) count(t *testing.T, q string, args ...any) int {
	t.Helper()
	var n int
	if err := f.db.R.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func ptr(b bool) *bool { return &b }

// TestGateScopeDefaultsToSchoolPolicy: a consent that leaves
// scope_gate_templates out gets its school's policy (off for a school
// with none); an explicit choice wins; changing the policy changes no
// consent already recorded.
func TestGateScopeDefaultsToSchoolPolicy(t *testing.T) {
	cases := []struct {
		name   string
		policy *bool // nil: never set
		grant  *bool
		want   bool
	}{
		{"no policy, left out", nil, nil, false},
		{"policy on, left out", ptr(true), nil, true},
		{"policy off, left out", ptr(false), nil, false},
		{"policy on, family says no", ptr(true), ptr(false), false},
		{"policy off, family says yes", ptr(false), ptr(true), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newScopeFixture(t)
			ctx := context.Background()
			if tc.policy != nil {
				if _, err := f.reg.SetSchoolPolicy(ctx, "admin:root", "s1", *tc.policy); err != nil {
					t.Fatal(err)
				}
			}
			c := f.grant(t, gsPupil, tc.grant)
			if c.ScopeGateTemplates == nil || *c.ScopeGateTemplates != tc.want {
				t.Fatalf("recorded scope %v, want %v", c.ScopeGateTemplates, tc.want)
			}
			// The other school's policy is its own.
			if b := f.grant(t, gsB, nil); *b.ScopeGateTemplates {
				t.Fatal("school s2 took s1's policy")
			}
			// Flipping the policy leaves the recorded consent as it is.
			if _, err := f.reg.SetSchoolPolicy(ctx, "admin:root", "s1", !tc.want); err != nil {
				t.Fatal(err)
			}
			if again, _ := f.reg.Current(ctx, gsPupil); *again.ScopeGateTemplates != tc.want {
				t.Fatal("a policy change changed a recorded consent")
			}
		})
	}
	f := newScopeFixture(t)
	if _, err := f.reg.SetSchoolPolicy(context.Background(), "admin:root", "nowhere", true); api.CodeOf(err) != api.CodeNotFound {
		t.Fatalf("unknown school: %v", err)
	}
	if n := f.count(t, `SELECT count(*) FROM audit_log WHERE action = ?`, consent.ActionPolicy); n != 0 {
		t.Fatalf("a refused policy change was audited (%d)", n)
	}
}

// TestGateScopeWithdrawalErasesGateTemplates: a renewal without the
// scope, or a full withdrawal, erases the pupil's teacher and automatic
// templates in the transaction that records it and bumps the gallery
// (subscribers hear it, as gates do); a renewal without the scope keeps
// the enrolment templates; a renewal that keeps the scope erases nothing;
// other pupils are untouched.
func TestGateScopeWithdrawalErasesGateTemplates(t *testing.T) {
	cases := []struct {
		name          string
		change        func(t *testing.T, f *scopeFixture)
		gateLeft      int
		enrolmentLeft int
		audited       string // audit action and field that records the erasure
	}{
		{"renewal without the scope", func(t *testing.T, f *scopeFixture) { f.grant(t, gsPupil, ptr(false)) }, 0, 1, "gate_templates_deleted"},
		{"renewal leaving it out, policy off", func(t *testing.T, f *scopeFixture) { f.grant(t, gsPupil, nil) }, 0, 1, "gate_templates_deleted"},
		{"renewal keeping the scope", func(t *testing.T, f *scopeFixture) { f.grant(t, gsPupil, ptr(true)) }, 2, 1, ""},
		{"full withdrawal", func(t *testing.T, f *scopeFixture) {
			if _, err := f.reg.Withdraw(context.Background(), "admin:root", gsPupil, "gia đình rút lại"); err != nil {
				t.Fatal(err)
			}
		}, 0, 0, "templates_deleted"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newScopeFixture(t)
			ctx := context.Background()
			for _, p := range []string{gsPupil, gsOther} {
				f.grant(t, p, ptr(true))
				if _, err := f.tpl.Add(ctx, p, f.desc(), f.tpl.Model(), match.Quality{}, nil); err != nil {
					t.Fatal(err)
				}
				for _, src := range []string{facetemplates.SourceTeacher, facetemplates.SourceAutomatic} {
					if _, err := f.tpl.AddGateTemplate(ctx, p, f.desc(), match.Quality{}, nil, src, "ev-"+p+src, "teacher:lan"); err != nil {
						t.Fatal(err)
					}
				}
			}
			v, _ := f.tpl.Version(ctx, "s1")
			tc.change(t, f)
			gate := f.count(t, `SELECT count(*) FROM face_templates WHERE pupil_id = ? AND source != 'enrolment'`, gsPupil)
			enrol := f.count(t, `SELECT count(*) FROM face_templates WHERE pupil_id = ? AND source = 'enrolment'`, gsPupil)
			if gate != tc.gateLeft || enrol != tc.enrolmentLeft {
				t.Fatalf("left %d gate and %d enrolment templates, want %d and %d", gate, enrol, tc.gateLeft, tc.enrolmentLeft)
			}
			if n := f.count(t, `SELECT count(*) FROM face_templates WHERE pupil_id = ?`, gsOther); n != 3 {
				t.Fatalf("the other pupil has %d templates left", n)
			}
			v2, _ := f.tpl.Version(ctx, "s1")
			if v2 <= v || f.notified["s1"] != v2 {
				t.Fatalf("gallery version %d -> %d, subscribers told %d", v, v2, f.notified["s1"])
			}
			_, served, _ := f.tpl.ActiveDescriptors(ctx, "s1")
			if len(served[gsPupil]) != tc.gateLeft+tc.enrolmentLeft {
				t.Fatalf("%d descriptors served for the pupil", len(served[gsPupil]))
			}
			if tc.audited != "" {
				if n := f.count(t, `SELECT count(*) FROM audit_log WHERE subject = ? AND json_extract(detail, '$.`+tc.audited+`') > 0`, "pupil:"+gsPupil); n != 1 {
					t.Fatalf("%d audit entries record %s", n, tc.audited)
				}
			}
		})
	}
}

// TestConsentPolicyAPI: the school's admins (and hub-wide admins) read
// and set the policy; admins of another school, teachers and anonymous
// callers are refused; a body without the field is a 400 naming it.
func TestConsentPolicyAPI(t *testing.T) {
	f := newScopeFixture(t)
	ctx := context.Background()
	if _, err := f.db.W.Exec(`INSERT INTO staff(id, school_id, full_name, role) VALUES ('t1', 's1', 'Cô Lan', 'teacher')`); err != nil {
		t.Fatal(err)
	}
	acfg := auth.DefaultConfig()
	acfg.BcryptCost = bcrypt.MinCost
	svc, err := auth.New(f.db, audit.New(f.db, nil, time.Now), acfg, nil, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	const pw = "mat-khau-dai-12345"
	for _, n := range []auth.NewAccount{
		{Username: "root", Password: pw, Role: auth.RoleAdmin},
		{Username: "admin-1", Password: pw, Role: auth.RoleAdmin, SchoolID: "s1"},
		{Username: "admin-2", Password: pw, Role: auth.RoleAdmin, SchoolID: "s2"},
		{Username: "lan", Password: pw, Role: auth.RoleTeacher, SchoolID: "s1", StaffID: "t1"},
	} {
		if _, _, err := svc.CreateAccount(ctx, "test", n); err != nil {
			t.Fatal(err)
		}
	}
	a := api.NewServer(nil, nil, svc)
	a.Engine.Use(svc.Middleware())
	a.V1.Use(svc.Middleware())
	f.reg.Routes(a.V1)
	if err := a.AddPaths(consent.OpenAPIPaths()); err != nil {
		t.Fatal(err)
	}
	if missing, err := a.MissingFromSpec(); err != nil || len(missing) > 0 {
		t.Fatalf("routes missing from the OpenAPI document: %v %v", missing, err)
	}
	ts := httptest.NewServer(a.Engine)
	defer ts.Close()
	call := func(method, user, body string) (int, consent.Policy) {
		t.Helper()
		req, _ := http.NewRequest(method, ts.URL+"/api/v1/schools/s1/consent-policy", bytes.NewReader([]byte(body)))
		req.Header.Set("Content-Type", "application/json")
		if user != "" {
			req.SetBasicAuth(user, pw)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var p consent.Policy
		_ = json.Unmarshal(b, &p)
		return resp.StatusCode, p
	}
	cases := []struct {
		method, user, body string
		status             int
		want               bool
	}{
		{"GET", "admin-1", "", 200, false},
		{"PUT", "admin-1", `{"gate_templates": true}`, 200, true},
		{"GET", "root", "", 200, true},
		{"PUT", "root", `{"gate_templates": false}`, 200, false},
		{"PUT", "admin-1", `{}`, 400, false},
		{"PUT", "admin-2", `{"gate_templates": true}`, 403, false},
		{"GET", "admin-2", "", 403, false},
		{"PUT", "lan", `{"gate_templates": true}`, 403, false},
		{"GET", "lan", "", 403, false},
		{"GET", "", "", 401, false},
	}
	for _, c := range cases {
		st, p := call(c.method, c.user, c.body)
		if st != c.status || (st == 200 && (p.GateTemplates != c.want || p.SchoolID != "s1")) {
			t.Errorf("%s as %q: %d %+v, want %d gate_templates=%v", c.method, c.user, st, p, c.status, c.want)
		}
	}
	if p, _ := f.reg.SchoolPolicy(ctx, "s1"); p.GateTemplates || p.UpdatedBy != "admin:root" {
		t.Fatalf("stored policy %+v", p)
	}
	if n := f.count(t, `SELECT count(*) FROM audit_log WHERE action = ? AND subject = 'school:s1'`, consent.ActionPolicy); n != 2 {
		t.Fatalf("%d policy changes audited, want 2", n)
	}
}
