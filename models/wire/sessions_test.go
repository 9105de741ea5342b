package wire

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/match"
)

// TestGallerySessionsRoundTrip: a document's per-person sessions reach the
// Gallery, survive DocFromGallery, and drive SessionFilter and
// SessionCandidates; a person without sessions is in every session.
func TestGallerySessionsRoundTrip(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "gallery", "valid_sessions.json"))
	if err != nil {
		t.Fatal(err)
	}
	doc, g, err := DecodeGallery(b)
	if err != nil {
		t.Fatal(err)
	}
	morningOnly, both := doc.People[0].StudentID, doc.People[1].StudentID
	if got := g.Sessions(morningOnly); !reflect.DeepEqual(got, []string{match.SessionMorning}) {
		t.Fatalf("sessions of %s: %v", morningOnly, got)
	}
	cases := []struct {
		session string
		person  string
		want    bool
	}{
		{match.SessionMorning, morningOnly, true},
		{match.SessionAfternoon, morningOnly, false},
		{"", morningOnly, true},
		{match.SessionAfternoon, both, true},
		{match.SessionAfternoon, "999999999999", false},
	}
	for _, tc := range cases {
		if got := (match.SessionFilter{G: g, Session: tc.session}).Allow(tc.person); got != tc.want {
			t.Errorf("Allow(%s in %q) = %v", tc.person, tc.session, got)
		}
	}
	if n := g.SessionCandidates(match.SessionAfternoon); n != 1 {
		t.Fatalf("afternoon candidates %d, want 1", n)
	}
	if n := g.SessionCandidates(match.SessionMorning); n != 2 {
		t.Fatalf("morning candidates %d, want 2", n)
	}
	again := DocFromGallery(doc.SchoolID, g)
	if !reflect.DeepEqual(again.People[0].Sessions, doc.People[0].Sessions) {
		t.Fatalf("DocFromGallery lost sessions: %v", again.People[0].Sessions)
	}
	// Filtering: the afternoon search never returns the morning-only pupil.
	probe := g.Descriptors(morningOnly)[0]
	if m := g.MatchFiltered(probe, match.SessionFilter{G: g, Session: match.SessionAfternoon}); m.PersonID != both {
		t.Fatalf("afternoon match %q, want %s", m.PersonID, both)
	}
	if m := g.MatchFiltered(probe, match.SessionFilter{G: g, Session: match.SessionMorning}); m.PersonID != morningOnly {
		t.Fatalf("morning match %q, want %s", m.PersonID, morningOnly)
	}
}

// TestGallerySessionUnknownRejected: an unknown session name is refused
// with an error naming the field and the name.
func TestGallerySessionUnknownRejected(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "gallery", "invalid", "session_unknown.json"))
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = DecodeGallery(b)
	var fe *conf.FieldError
	if !errors.As(err, &fe) || fe.Field != "people[1].sessions" || !strings.Contains(err.Error(), `"evening"`) {
		t.Fatalf("got %v", err)
	}
}
