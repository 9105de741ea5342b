package roster

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/diemdanh/diemdanh/hub/api"
)

// FuzzImportPupilsCSV feeds arbitrary files to the importer (dry run):
// it must never panic, and it either accepts the whole file or refuses it
// with row errors that carry a line and a reason.
func FuzzImportPupilsCSV(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "*.csv"))
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add("personal_id,full_name,class\n001234567890,An,6A\n")
	s := newStore(f)
	f.Fuzz(func(t *testing.T, body string) {
		rep, err := s.ImportPupilsCSV(context.Background(), "thcs-a", strings.NewReader(body), true)
		if err == nil {
			if len(rep.Errors) != 0 || rep.Rows == 0 {
				t.Fatalf("accepted with errors or no rows: %+v", rep)
			}
			return
		}
		if api.CodeOf(err) != api.CodeInvalid {
			t.Fatalf("unexpected error class: %v", err)
		}
		if len(rep.Errors) == 0 {
			t.Fatalf("refused without a row error: %v", err)
		}
		for _, e := range rep.Errors {
			if e.Line < 1 || e.Reason == "" || !utf8.ValidString(e.Reason) && e.Field == "" {
				t.Fatalf("bad row error %+v", e)
			}
		}
	})
}
