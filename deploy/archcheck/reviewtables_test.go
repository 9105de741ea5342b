package archcheck

import (
	"bytes"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The faces the gates did not decide, with their crops, are hub/facereview's:
// it alone writes its tables, and nothing that feeds the city database
// (hub/citysync, the city schema in deploy/citydb, a change-log trigger)
// names them, so the crops never leave the hub.
const reviewOwner = "hub/facereview"

var reviewTables = []string{"unrecognised_faces", "unrecognised_dismissals"}

// TestReviewTablesWrittenByFaceReviewOnly fails, naming file and line, for
// each INSERT, UPDATE, DELETE or REPLACE of the review tables in a non-test
// file outside hub/facereview, and when the scan finds no write of each
// table in hub/facereview (it would be blind). Tables named at run time are
// TestRosterTablesWrittenByRosterOnly's.
func TestReviewTablesWrittenByFaceReviewOnly(t *testing.T) {
	byPkg, files := moduleWrites(t, "../..", reviewTables)
	if files < 100 {
		t.Fatalf("parsed %d .go files: not the module", files)
	}
	owned := map[string]bool{}
	for _, pkg := range slices.Sorted(maps.Keys(byPkg)) {
		for _, w := range byPkg[pkg] {
			switch {
			case w.table == "":
			case pkg == reviewOwner:
				owned[w.table] = true
			default:
				t.Errorf("%s:%d: %s, outside %s: use its Store", w.file, w.line, w.what(), reviewOwner)
			}
		}
	}
	for _, tb := range reviewTables {
		if !owned[tb] {
			t.Errorf("found no write of %s in %s: the scan misses SQL", tb, reviewOwner)
		}
	}
}

// cityTrigger finds a trigger defined on a review table.
var cityTrigger = regexp.MustCompile(`(?is)create\s+trigger\b[^;]*?\bon\s+["\[]?(unrecognised_\w+)`)

// TestCitySyncNeverReadsReviewTables fails when a non-test file of
// hub/citysync or deploy/citydb names a review table, or a hub migration
// defines a trigger on one (the city's change log is filled by triggers).
// It checks that it read the files it scans: citysync's own change log
// must be named there.
func TestCitySyncNeverReadsReviewTables(t *testing.T) {
	seen := false
	for _, dir := range []string{"../../hub/citysync", "../../deploy/citydb"} {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || strings.HasSuffix(p, "_test.go") {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			b = bytes.ToLower(b)
			seen = seen || bytes.Contains(b, []byte("citysync_changes"))
			for _, tb := range reviewTables {
				if bytes.Contains(b, []byte(tb)) {
					t.Errorf("%s names %s: the city sync must not read unrecognised faces", p, tb)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if !seen {
		t.Fatal("no file of hub/citysync names citysync_changes: the scan read nothing")
	}
	migs, err := filepath.Glob("../../hub/store/migrations/*.sql")
	if err != nil || len(migs) < 5 {
		t.Fatalf("hub migrations: %d files, %v", len(migs), err)
	}
	for _, p := range migs {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range cityTrigger.FindAllSubmatch(b, -1) {
			t.Errorf("%s defines a trigger on %s: nothing may log its rows for the city sync", filepath.Base(p), m[1])
		}
	}
}

// TestCityTriggerScan checks the trigger pattern on known SQL, so the test
// above cannot pass by matching nothing.
func TestCityTriggerScan(t *testing.T) {
	for sql, want := range map[string]string{
		"CREATE TRIGGER x AFTER INSERT ON unrecognised_faces BEGIN INSERT INTO citysync_changes VALUES (1); END;":     "unrecognised_faces",
		"create trigger if not exists y\n after update of status on \"unrecognised_dismissals\" begin select 1; end;": "unrecognised_dismissals",
		"CREATE TRIGGER z AFTER INSERT ON events BEGIN INSERT INTO citysync_changes VALUES (1); END;":                 "",
	} {
		got := ""
		if m := cityTrigger.FindStringSubmatch(sql); m != nil {
			got = m[1]
		}
		if got != want {
			t.Errorf("%q: found %q, want %q", sql, got, want)
		}
	}
}
