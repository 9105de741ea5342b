package enrol

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"unicode/utf16"
)

// TestSecurityRosterEncodings: the bulk-enrolment roster shares the roster
// importer's decoder (roster.DecodeText): Excel's "Unicode Text" (UTF-16LE
// with a BOM, tab-separated) is read, a legacy-encoded file is refused with
// one error naming the encoding and the line.
func TestSecurityRosterEncodings(t *testing.T) {
	text := "personal_id\tphotos\tconsent_guardian\r\n000000000001\ta.jpg\tNguyễn Thị Bình\r\n000000000002\t\tĐặng Văn Đức\r\n"
	for _, order := range []binary.AppendByteOrder{binary.LittleEndian, binary.BigEndian} {
		b := order.AppendUint16(nil, 0xFEFF)
		for _, u := range utf16.Encode([]rune(text)) {
			b = order.AppendUint16(b, u)
		}
		rows, err := ParseRoster(strings.NewReader(string(b)))
		if err != nil || len(rows) != 2 || rows[0].ConsentGuardian != "Nguyễn Thị Bình" || len(rows[0].Photos) != 1 ||
			rows[1].PupilID != "000000000002" || rows[1].ConsentGuardian != "Đặng Văn Đức" {
			t.Fatalf("%v: %+v %v", order, rows, err)
		}
	}
	_, err := ParseRoster(strings.NewReader("personal_id,consent_guardian\n000000000001,An\n000000000002,Nguy\xea\xden\n"))
	var re RosterErrors
	if !errors.As(err, &re) || len(re) != 1 || re[0].Line != 3 || re[0].Field != "file" ||
		!strings.Contains(re[0].Reason, "UTF-8") || !strings.Contains(re[0].Reason, "Windows-1258") {
		t.Fatalf("legacy encoding: %v", err)
	}
}
