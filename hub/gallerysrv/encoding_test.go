package gallerysrv

import (
	"context"
	"encoding/binary"
	"strings"
	"testing"
	"time"
	"unicode/utf16"
)

// TestSecurityCandidatesCSVEncodings: the candidates import shares the
// roster importer's decoder (roster.DecodeText): Excel's "Unicode Text"
// (UTF-16 with a BOM, tab-separated) is read; a legacy-encoded file or
// UTF-16 without a BOM is refused with one "encoding" error on the first
// bad line, and nothing is written.
func TestSecurityCandidatesCSVEncodings(t *testing.T) {
	f := newFixture(t, nil, time.Hour)
	ctx := context.Background()
	if _, err := f.db.W.Exec(`INSERT INTO classes(id, school_id, name, grade) VALUES ('cA', 'thcs-a', '6A', 6), ('cB', 'thcs-a', 'Lớp Bốn', 4)`); err != nil {
		t.Fatal(err)
	}
	utf16File := func(s string, order binary.AppendByteOrder, bom bool) string {
		var b []byte
		if bom {
			b = order.AppendUint16(b, 0xFEFF)
		}
		for _, u := range utf16.Encode([]rune(s)) {
			b = order.AppendUint16(b, u)
		}
		return string(b)
	}
	text := "lớp\tca học\r\n6A\tsáng\r\nLớp Bốn\tchiều\r\n"
	for _, tc := range []struct {
		name, body string
		line       int // 0: imported
	}{
		{"UTF-16LE with BOM", utf16File(text, binary.LittleEndian, true), 0},
		{"UTF-16BE with BOM", utf16File(text, binary.BigEndian, true), 0},
		{"UTF-16LE without BOM", utf16File(text, binary.LittleEndian, false), 1},
		{"Windows-1258", "class,sessions\n6A,morning\nL\xf5p B\xf4\xd2n,chi\xea\xecu\n", 3},
	} {
		rep, err := f.srv.ImportCandidatesCSV(ctx, "admin:x", "", "thcs-a", strings.NewReader(tc.body))
		if tc.line == 0 {
			if err != nil || !rep.Applied || rep.Rows != 2 {
				t.Errorf("%s: %+v %v", tc.name, rep, err)
			}
			continue
		}
		if err == nil || rep.Applied || len(rep.Errors) != 1 || rep.Errors[0].Line != tc.line || rep.Errors[0].Field != "encoding" {
			t.Errorf("%s: want one encoding error on line %d, got %+v %v", tc.name, tc.line, rep.Errors, err)
		}
	}
}
