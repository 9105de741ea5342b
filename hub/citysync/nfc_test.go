package citysync_test

import (
	"testing"

	"golang.org/x/text/unicode/norm"
)

// Names the city's system stores decomposed (NFD) arrive on the hub
// composed (NFC), like names typed at the school, so the two are equal.
func TestSecurityCityNamesStoredNFC(t *testing.T) {
	f := newFixture(t, cluster)
	f.seedRoster(1, 2)
	nfc := "Nguyễn Thị Ánh"
	nfd := norm.NFD.String(nfc)
	if nfd == nfc {
		t.Fatal("test name has no decomposed form")
	}
	mustExec(t, f.admin, `UPDATE records.pupils SET full_name = $1 WHERE pupil_code = 'HS1001'`, nfd)
	mustExec(t, f.admin, `INSERT INTO records.guardians (school_id, pupil_code, guardian_no, full_name, phone, relation) VALUES
		('S1', 'HS1001', 1, $1, '0901234567', 'mẹ')`, norm.NFD.String("Trần Thị Mỹ"))
	f.worker()
	if rep := f.sync(); !rep.RosterPulled {
		t.Fatal("roster not pulled")
	}
	if n := f.hubInt(`SELECT count(*) FROM pupils WHERE id = ? AND full_name = ?`, pid(1001), nfc); n != 1 {
		t.Errorf("pupil name not stored NFC")
	}
	if n := f.hubInt(`SELECT count(*) FROM guardians WHERE pupil_id = ? AND full_name = ?`, pid(1001), "Trần Thị Mỹ"); n != 1 {
		t.Errorf("guardian name not stored NFC")
	}
}
