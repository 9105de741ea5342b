package enrol

import (
	"strings"
	"testing"

	"github.com/diemdanh/diemdanh/models/wire"
)

// FuzzParseRoster: any bytes give rows or a RosterErrors, never a panic,
// and accepted rows are always safe (valid IDs, clean photo names, no
// formula cells).
func FuzzParseRoster(f *testing.F) {
	f.Add([]byte("personal_id,photos\n000000000001,a.jpg;b.jpg\n"))
	f.Add([]byte("\xef\xbb\xbfpersonal_id;consent_ref;consent_pupil\n000000000002;DK-1;có\n"))
	f.Add([]byte("personal_id\n=1+1\n"))
	f.Add([]byte{0xff, 0xfe, 'p', 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		rows, err := ParseRoster(strings.NewReader(string(b)))
		if err != nil {
			if _, ok := err.(RosterErrors); !ok {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		for _, r := range rows {
			if !wire.ValidPersonalID(r.PupilID) {
				t.Fatalf("bad id accepted: %q", r.PupilID)
			}
			for _, p := range r.Photos {
				if _, ok := CleanName(p); !ok {
					t.Fatalf("unsafe photo name accepted: %q", p)
				}
			}
			if formula(r.ConsentRef) || formula(r.ConsentGuardian) {
				t.Fatalf("formula accepted: %+v", r)
			}
		}
	})
}
