package archcheck

import (
	"maps"
	"slices"
	"testing"
)

// The privacy duties' tables have one writer each: the breach register is
// hub/breach's (every change audited with it), the login lockout counters
// hub/loginlock's.
var privacyOwners = map[string]string{
	"breaches":       "hub/breach",
	"login_lockouts": "hub/loginlock",
}

// TestPrivacyTablesWrittenByOwnerOnly fails, naming file and line, for each
// INSERT, UPDATE, DELETE or REPLACE of a privacy table in a non-test file
// outside its owner, and when the scan finds no write of a table in its
// owner (it would be blind).
func TestPrivacyTablesWrittenByOwnerOnly(t *testing.T) {
	tables := slices.Sorted(maps.Keys(privacyOwners))
	byPkg, files := moduleWrites(t, "../..", tables)
	if files < 100 {
		t.Fatalf("parsed %d .go files: not the module", files)
	}
	owned := map[string]bool{}
	for _, pkg := range slices.Sorted(maps.Keys(byPkg)) {
		for _, w := range byPkg[pkg] {
			switch {
			case w.table == "":
			case privacyOwners[w.table] == pkg:
				owned[w.table] = true
			default:
				t.Errorf("%s:%d: %s, outside %s: use its functions", w.file, w.line, w.what(), privacyOwners[w.table])
			}
		}
	}
	for _, tb := range tables {
		if !owned[tb] {
			t.Errorf("found no write of %s in %s: the scan misses SQL", tb, privacyOwners[tb])
		}
	}
}
