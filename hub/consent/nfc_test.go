package consent_test

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/consent"
	"github.com/diemdanh/diemdanh/hub/facetemplates"
	"github.com/diemdanh/diemdanh/hub/roster"
	"github.com/diemdanh/diemdanh/hub/store"
	"golang.org/x/text/unicode/norm"
)

// TestSecurityConsentTextIsNFC: the guardian name and document reference of
// a consent are stored trimmed and in Unicode NFC (roster.NormalizeText),
// like every name in the roster, whatever form the client sent.
func TestSecurityConsentTextIsNFC(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "hub.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	rs := roster.New(db, nil, nil)
	if _, err := rs.PutSchool(ctx, roster.School{ID: "s1", Name: "Trường Một"}); err != nil {
		t.Fatal(err)
	}
	if _, err := rs.PutPupil(ctx, roster.Pupil{ID: "001234567890", SchoolID: "s1", FullName: "An", DateOfBirth: "2021-01-01"}); err != nil {
		t.Fatal(err)
	}
	tpl, err := facetemplates.Open(db, bytes.Repeat([]byte{5}, facetemplates.KeySize), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := consent.New(db, tpl, audit.New(db, nil, nil), nil, nil)
	const name, ref = "Nguyễn Thị Bình", "Đơn đồng ý số 12"
	if norm.NFD.String(name) == name || norm.NFD.String(ref) == ref {
		t.Fatal("test values have nothing to decompose")
	}
	if _, err := reg.Record(ctx, "admin", consent.Grant{PupilID: "001234567890", GuardianName: " " + norm.NFD.String(name),
		DocumentRef: norm.NFD.String(ref), ScopeFace: true}); err != nil {
		t.Fatal(err)
	}
	c, err := reg.Current(ctx, "001234567890")
	if err != nil || c == nil {
		t.Fatal(c, err)
	}
	if c.GuardianName != name || c.DocumentRef != ref {
		t.Fatalf("stored %+q / %+q, want the composed %q / %q", c.GuardianName, c.DocumentRef, name, ref)
	}
}
