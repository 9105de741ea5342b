package roster

// Regression tests for the roster findings of the security probe (issue 13):
// names not normalised to NFC, CSV files in other encodings than UTF-8, and
// a pupil export that did not import back.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/diemdanh/diemdanh/hub/api"
	"golang.org/x/text/unicode/norm"
)

// serve runs s's routes on a local test server.
func serve(t *testing.T, s *Store) client {
	t.Helper()
	srv := api.NewServer(nil, nil, nil)
	s.Routes(srv.V1)
	ts := httptest.NewServer(srv.Engine)
	t.Cleanup(ts.Close)
	return client{t, ts.URL}
}

// raw sends body as is and returns the status and the response body.
func (c client) raw(method, path string, body []byte) (int, []byte) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+"/api/v1"+path, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp.StatusCode, b
}

// nfd returns s decomposed, failing the test when that changes nothing
// (the input would not test anything).
func nfd(t *testing.T, s string) string {
	t.Helper()
	if !norm.NFC.IsNormalString(s) {
		t.Fatalf("expected value %q is not NFC", s)
	}
	d := norm.NFD.String(s)
	if d == s {
		t.Fatalf("%q has nothing to decompose", s)
	}
	return d
}

// storedText reads one column straight from the database.
func storedText(t *testing.T, s *Store, q string, args ...any) string {
	t.Helper()
	var v string
	if err := s.db.R.QueryRow(q, args...).Scan(&v); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return v
}

func TestSecurityNamesAreStoredNFC(t *testing.T) {
	s := New(openDB(t), nil, nil)
	s.BcryptCost = 4
	c := serve(t, s)

	const (
		school   = "Trường THCS Nguyễn Trãi"
		district = "Quận Đống Đa"
		class    = "Lớp Sáu Ất"
		pupil    = "Nguyễn Văn Ẩn"
		guardian = "Nguyễn Thị Bình"
		relation = "bà ngoại"
		staff    = "Cô Lê Thị Hường"
		gate     = "Cổng chính"
	)
	c.do("POST", "/schools", map[string]any{"id": "thcs-nt", "name": " " + nfd(t, school) + " ", "district": nfd(t, district)}, 201, nil)
	c.do("POST", "/schools/thcs-nt/classes", map[string]any{"id": "6a", "name": nfd(t, class), "grade": 6}, 201, nil)
	c.do("POST", "/schools/thcs-nt/pupils", map[string]any{"id": "001234567890", "full_name": nfd(t, pupil), "class_id": "6a"}, 201, nil)
	var g Guardian
	c.do("POST", "/pupils/001234567890/guardians", map[string]any{"full_name": nfd(t, guardian), "relation": nfd(t, relation)}, 201, &g)
	c.do("POST", "/schools/thcs-nt/staff", map[string]any{"id": "gv-huong", "full_name": nfd(t, staff), "role": "teacher"}, 201, nil)
	c.do("POST", "/schools/thcs-nt/gates", map[string]any{"id": "cong-chinh", "name": nfd(t, gate)}, 201, nil)

	for _, tc := range []struct {
		what, q string
		arg     any
		want    string
	}{
		{"school name", `SELECT name FROM schools WHERE id = ?`, "thcs-nt", school},
		{"school district", `SELECT district FROM schools WHERE id = ?`, "thcs-nt", district},
		{"class name", `SELECT name FROM classes WHERE id = ?`, "6a", class},
		{"pupil name", `SELECT full_name FROM pupils WHERE id = ?`, "001234567890", pupil},
		{"guardian name", `SELECT full_name FROM guardians WHERE id = ?`, g.ID, guardian},
		{"guardian relation", `SELECT relation FROM guardians WHERE id = ?`, g.ID, relation},
		{"staff name", `SELECT full_name FROM staff WHERE id = ?`, "gv-huong", staff},
		{"gate name", `SELECT name FROM gates WHERE id = ?`, "cong-chinh", gate},
	} {
		if got := storedText(t, s, tc.q, tc.arg); got != tc.want {
			t.Errorf("%s via the API: stored %q (%+q), want the composed %q", tc.what, got, got, tc.want)
		}
	}

	// A PATCH goes through the same normalisation.
	c.do("PATCH", "/pupils/001234567890", map[string]any{"full_name": nfd(t, "Trần Thị Ý")}, 200, nil)
	if got := storedText(t, s, `SELECT full_name FROM pupils WHERE id = '001234567890'`); got != "Trần Thị Ý" {
		t.Errorf("patched pupil name stored %+q", got)
	}

	// CSV: names arrive decomposed, the class is named (decomposed, other
	// case) rather than given by ID; the guardian matches the one entered
	// above, so it is updated rather than duplicated.
	body := "personal_id,full_name,class,guardian_name,guardian_phone,guardian_relation\n" +
		"001234567890," + nfd(t, pupil) + "," + nfd(t, "lớp sáu ất") + "," + nfd(t, guardian) + ",0901234567," + nfd(t, relation) + "\n" +
		"001234567891," + nfd(t, "Phạm Thị Ánh") + "," + nfd(t, class) + "," + nfd(t, "Phạm Văn Đức") + ",0912345678,bố\n"
	var rep ImportReport
	c.do("POST", "/schools/thcs-nt/pupils/import", body, 200, &rep)
	if !rep.Applied || rep.Created != 1 || rep.Updated != 1 {
		t.Fatalf("import: %+v", rep)
	}
	for id, want := range map[string]string{"001234567890": pupil, "001234567891": "Phạm Thị Ánh"} {
		var p Pupil
		c.do("GET", "/pupils/"+id, nil, 200, &p)
		if p.FullName != want || p.ClassID != "6a" {
			t.Errorf("pupil %s via CSV: %+q in class %q, want %q in 6a", id, p.FullName, p.ClassID, want)
		}
	}
	var gs []Guardian
	c.do("GET", "/pupils/001234567890/guardians", nil, 200, &gs)
	if len(gs) != 1 || gs[0].FullName != guardian || gs[0].Phone != "0901234567" || gs[0].Relation != relation {
		t.Errorf("the decomposed guardian name must match the stored one (one guardian, phone updated): %+v", gs)
	}
	c.do("GET", "/pupils/001234567891/guardians", nil, 200, &gs)
	if len(gs) != 1 || gs[0].FullName != "Phạm Văn Đức" {
		t.Errorf("new guardian via CSV: %+v", gs)
	}

	// Importing the composed form again changes nothing.
	composed := norm.NFC.String(body)
	c.do("POST", "/schools/thcs-nt/pupils/import", composed, 200, &rep)
	for _, id := range []string{"001234567890", "001234567891"} {
		c.do("GET", "/pupils/"+id+"/guardians", nil, 200, &gs)
		if len(gs) != 1 {
			t.Errorf("pupil %s: composed re-import duplicated a guardian: %+v", id, gs)
		}
	}
}

func TestSecurityNameKeyTreatsFormsAlike(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"Nguyễn Thị Bình", norm.NFD.String("Nguyễn Thị Bình"), true},
		{"Nguyễn Thị Bình", "  nguyễn  thị BÌNH ", true},
		{"Lớp 6A", norm.NFD.String("lớp 6a"), true},
		{"Nguyễn Thị Bình", "Nguyen Thi Binh", false}, // diacritics matter in Vietnamese
		{"Lê Thị Hà", "Lê Thị Hạ", false},
	} {
		if got := NameKey(tc.a) == NameKey(tc.b); got != tc.same {
			t.Errorf("NameKey(%+q) == NameKey(%+q): %v, want %v", tc.a, tc.b, got, tc.same)
		}
	}
}

// utf16File encodes s as UTF-16 with a byte-order mark.
func utf16File(s string, order binary.AppendByteOrder) []byte {
	var b []byte
	b = order.AppendUint16(b, 0xFEFF)
	for _, u := range utf16.Encode([]rune(s)) {
		b = order.AppendUint16(b, u)
	}
	return b
}

func TestSecurityCSVEncodings(t *testing.T) {
	const comma = "personal_id,full_name,class,guardian_name,guardian_phone\r\n" +
		"001234567890,Nguyễn Văn Ân,6A,Nguyễn Thị Bình,+84901234567\r\n" +
		"001234567891,Đặng Thùy Dương,6A,,\r\n"
	tab := strings.ReplaceAll(comma, ",", "\t")      // Excel "Unicode text"
	semicolon := strings.ReplaceAll(comma, ",", ";") // Excel CSV in a Vietnamese locale
	for _, tc := range []struct {
		name string
		body []byte
	}{
		{"UTF-8", []byte(comma)},
		{"UTF-8 with BOM", append([]byte("\xEF\xBB\xBF"), comma...)},
		{"UTF-8 with BOM, semicolons", append([]byte("\xEF\xBB\xBF"), semicolon...)},
		{"UTF-16LE with BOM", utf16File(comma, binary.LittleEndian)},
		{"UTF-16LE with BOM, tabs (Excel Unicode text)", utf16File(tab, binary.LittleEndian)},
		{"UTF-16BE with BOM", utf16File(comma, binary.BigEndian)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			c := serve(t, s)
			st, b := c.raw("POST", "/schools/thcs-a/pupils/import", tc.body)
			if st != 200 {
				t.Fatalf("status %d: %s", st, b)
			}
			var p Pupil
			c.do("GET", "/pupils/001234567890", nil, 200, &p)
			if p.FullName != "Nguyễn Văn Ân" || p.ClassID != "6a" {
				t.Errorf("pupil: %+v", p)
			}
			c.do("GET", "/pupils/001234567891", nil, 200, &p)
			if p.FullName != "Đặng Thùy Dương" {
				t.Errorf("pupil: %+v", p)
			}
			var gs []Guardian
			c.do("GET", "/pupils/001234567890/guardians", nil, 200, &gs)
			if len(gs) != 1 || gs[0].FullName != "Nguyễn Thị Bình" || gs[0].Phone != "+84901234567" {
				t.Errorf("guardians: %+v", gs)
			}
		})
	}

	// Files that are not text in a supported encoding are refused with ONE
	// error that names the encoding and the line, and nothing is stored.
	win1258 := "personal_id,full_name,class\n001234567890,An,6A\n001234567891,Nguy\xea\xden V\xe3n An,6A\n001234567892,Tr\xe2\xecn B\xecnh,6A\n"
	noBOM := utf16File(comma, binary.LittleEndian)[2:]
	for _, tc := range []struct {
		name string
		body []byte
		line int
		want []string
	}{
		{"Windows-1258 bytes", []byte(win1258), 3, []string{"UTF-8", "line 3", "Windows-1258"}},
		{"TCVN3 bytes in the header", []byte("personal_id,h\xae t\xaan\n001234567890,An\n"), 1, []string{"UTF-8", "line 1"}},
		{"UTF-16 without a BOM", noBOM, 1, []string{"UTF-16", "byte-order mark"}},
		{"UTF-16LE cut in half", utf16File(comma, binary.LittleEndian)[:51], 1, []string{"UTF-16", "odd"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			c := serve(t, s)
			st, b := c.raw("POST", "/schools/thcs-a/pupils/import", tc.body)
			var eb struct {
				Error   string       `json:"error"`
				Details ImportReport `json:"details"`
			}
			if err := json.Unmarshal(b, &eb); err != nil || st != 400 {
				t.Fatalf("status %d: %s (%v)", st, b, err)
			}
			errs := eb.Details.Errors
			if len(errs) != 1 || errs[0].Line != tc.line || errs[0].Field != "encoding" {
				t.Fatalf("want one encoding error on line %d, got %+v", tc.line, errs)
			}
			for _, w := range tc.want {
				if !strings.Contains(errs[0].Reason, w) {
					t.Errorf("reason %q does not mention %q", errs[0].Reason, w)
				}
			}
			if n := countPupils(t, s); n != 0 {
				t.Errorf("%d pupils stored from a refused file", n)
			}
		})
	}
}

func TestSecurityDecodeText(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
		want string
		line int // 0: accepted
	}{
		{"plain", []byte("a,b\n"), "a,b\n", 0},
		{"UTF-8 BOM", []byte("\xEF\xBB\xBFĐ,b\n"), "Đ,b\n", 0},
		{"UTF-16LE", utf16File("Đ,😀\n", binary.LittleEndian), "Đ,😀\n", 0},
		{"UTF-16BE", utf16File("Đ,😀\n", binary.BigEndian), "Đ,😀\n", 0},
		{"empty", nil, "", 0},
		{"UTF-16 lone surrogate", append(utf16File("a\nb\n", binary.LittleEndian), 0x00, 0xD8, 'x', 0), "", 3},
		{"NUL byte", []byte("a\nb\x00\n"), "", 2},
		{"invalid UTF-8 on line 4", []byte("a\nb\nc\nd\xff\n"), "", 4},
		{"UTF-32LE BOM", []byte("\xFF\xFE\x00\x00a\x00\x00\x00"), "", 1},
	} {
		got, err := DecodeText(tc.in)
		if tc.line == 0 {
			if err != nil || string(got) != tc.want {
				t.Errorf("%s: %q, %v; want %q", tc.name, got, err, tc.want)
			}
			continue
		}
		ee, ok := err.(*EncodingError)
		if !ok || ee.Line != tc.line {
			t.Errorf("%s: want an encoding error on line %d, got %q, %v", tc.name, tc.line, got, err)
		}
	}
}

// rosterSnapshot is what a school's roster holds, independent of database
// IDs and order: a line per pupil and per guardian.
func rosterSnapshot(t *testing.T, s *Store, school string) []string {
	t.Helper()
	ctx := context.Background()
	ps, err := s.Pupils(ctx, school, PupilFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range ps {
		out = append(out, strings.Join([]string{"pupil", p.ID, p.FullName, p.ClassID, p.DateOfBirth, p.Gender,
			mustJSON(p.Active), mustJSON(p.ManualAttendance), p.Source}, "|"))
		gs, err := s.Guardians(ctx, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range gs {
			out = append(out, strings.Join([]string{"guardian", p.ID, g.FullName, g.Phone, g.Email, g.Relation}, "|"))
		}
	}
	sort.Strings(out)
	return out
}

func TestSecurityPupilExportRoundTrips(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	if _, err := s.PutClass(ctx, Class{ID: "7b", SchoolID: "thcs-a", Name: "7B", Grade: 7, Active: true}); err != nil {
		t.Fatal(err)
	}
	c := serve(t, s)
	pupils := []map[string]any{
		{"id": "001234567890", "full_name": "Nguyễn Văn An", "class_id": "6a", "date_of_birth": "2014-03-02", "gender": "male"},
		{"id": "001234567891", "full_name": "Trần Thị Bích Ngọc", "class_id": "6a", "gender": "female"},
		{"id": "001234567892", "full_name": "Lê Hoàng, \"Bé\" Út", "class_id": "7b", "active": false},
		{"id": "001234567893", "full_name": "Phạm Đức Thắng", "manual_attendance": true},
		{"id": "001234567894", "full_name": "'=Đỗ Quỳnh", "class_id": "7b"}, // an odd name that starts like an escaped formula
	}
	for _, p := range pupils {
		c.do("POST", "/schools/thcs-a/pupils", p, 201, nil)
	}
	guardians := map[string][]map[string]any{
		"001234567891": {{"full_name": "Trần Văn Cường", "phone": "+84 912 345 678", "email": "=cuong@example.vn", "relation": "bố"}},
		"001234567892": {
			{"full_name": "Lê Thị Hằng", "phone": "0901234567", "relation": "mẹ"},
			{"full_name": "Lê Văn Hải", "email": "-hai@example.vn", "relation": "ông nội"},
		},
		"001234567893": {
			{"full_name": "Phạm Thị Mai", "phone": "+84987654321"},
			{"full_name": "Vũ Thị Lan", "relation": "'@dì"},
		},
	}
	for id, gs := range guardians {
		for _, g := range gs {
			c.do("POST", "/pupils/"+id+"/guardians", g, 201, nil)
		}
	}
	want := rosterSnapshot(t, s, "thcs-a")
	if len(want) != len(pupils)+5 {
		t.Fatalf("setup: %d rows: %v", len(want), want)
	}

	st, export := c.raw("GET", "/schools/thcs-a/pupils/export", nil)
	if st != 200 {
		t.Fatalf("export: %d %s", st, export)
	}

	// One row per pupil, and no cell a spreadsheet would run as a formula.
	recs, err := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(export, []byte("\xEF\xBB\xBF")))).ReadAll()
	if err != nil {
		t.Fatalf("export is not CSV: %v\n%s", err, export)
	}
	if len(recs) != 1+len(pupils) {
		t.Errorf("export has %d data rows for %d pupils:\n%s", len(recs)-1, len(pupils), export)
	}
	for _, rec := range recs {
		for _, cell := range rec {
			if cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0])) {
				t.Errorf("cell %q can run as a formula", cell)
			}
		}
	}
	for _, cell := range []string{"'=cuong@example.vn", "'+84 912 345 678", "'-hai@example.vn", "''=Đỗ Quỳnh", "''@dì"} {
		if !strings.Contains(string(export), cell) {
			t.Errorf("export lacks the escaped cell %q:\n%s", cell, export)
		}
	}

	// Re-import into the same school: an idempotent update.
	for i := 0; i < 2; i++ {
		var rep ImportReport
		st, b := c.raw("POST", "/schools/thcs-a/pupils/import", export)
		if st != 200 || json.Unmarshal(b, &rep) != nil || !rep.Applied || rep.Updated != len(pupils) || rep.Created != 0 {
			t.Fatalf("re-import %d: %d %s", i+1, st, b)
		}
		if got := rosterSnapshot(t, s, "thcs-a"); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("re-import %d changed the roster:\n got %q\nwant %q", i+1, got, want)
		}
	}

	// Import into a fresh hub's school with the same classes.
	fresh := newStore(t)
	if _, err := fresh.PutClass(ctx, Class{ID: "7b", SchoolID: "thcs-a", Name: "7B", Grade: 7, Active: true}); err != nil {
		t.Fatal(err)
	}
	fc := serve(t, fresh)
	var rep ImportReport
	st, b := fc.raw("POST", "/schools/thcs-a/pupils/import", export)
	if st != 200 || json.Unmarshal(b, &rep) != nil || !rep.Applied || rep.Created != len(pupils) {
		t.Fatalf("import into a fresh school: %d %s", st, b)
	}
	if got := rosterSnapshot(t, fresh, "thcs-a"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("fresh import differs:\n got %q\nwant %q", got, want)
	}

	// And the fresh school's export is the same file.
	_, again := fc.raw("GET", "/schools/thcs-a/pupils/export", nil)
	if !bytes.Equal(again, export) {
		t.Errorf("export of the imported roster differs:\n%s\n---\n%s", again, export)
	}
}

func TestSecurityImportLeavesAbsentColumnsAlone(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	if _, err := s.PutPupil(ctx, Pupil{ID: "001234567890", SchoolID: "thcs-a", ClassID: "6a", FullName: "Nguyễn Văn An",
		DateOfBirth: "2014-03-02", Gender: "male", Active: false, ManualAttendance: true}); err != nil {
		t.Fatal(err)
	}
	rep, err := s.ImportPupilsCSV(ctx, "thcs-a", strings.NewReader("personal_id,full_name\n001234567890,Nguyễn Văn Ân\n"), false)
	if err != nil || rep.Updated != 1 {
		t.Fatalf("import: %v %+v", err, rep)
	}
	p, err := s.Pupil(ctx, "001234567890")
	if err != nil {
		t.Fatal(err)
	}
	if p.FullName != "Nguyễn Văn Ân" || p.ClassID != "6a" || p.DateOfBirth != "2014-03-02" || p.Gender != "male" || p.Active || !p.ManualAttendance {
		t.Fatalf("a file without class/date/gender/active/manual columns changed them: %+v", p)
	}
}

func TestSecurityImportGuardianColumns(t *testing.T) {
	s := newStore(t)
	for _, tc := range []struct {
		name, body string
		line       int
		field      string
	}{
		{"old and numbered column for the same guardian", "personal_id,full_name,guardian_name,guardian1_name\n001234567890,An,A,B\n", 1, "guardian1_name"},
		{"guardian 0", "personal_id,full_name,guardian0_name\n001234567890,An,A\n", 1, "guardian0_name"},
		{"unknown guardian field", "personal_id,full_name,guardian1_shoe\n001234567890,An,A\n", 1, "guardian1_shoe"},
		{"same guardian twice in a row", "personal_id,full_name,guardian1_name,guardian2_name\n001234567890,An,Lê Thị Hà," + norm.NFD.String("lê thị hà") + "\n", 2, "guardian2_name"},
		{"phone without a name", "personal_id,full_name,guardian2_name,guardian2_phone\n001234567890,An,,0901234567\n", 2, "guardian2_name"},
	} {
		rep, err := s.ImportPupilsCSV(context.Background(), "thcs-a", strings.NewReader(tc.body), false)
		if api.CodeOf(err) != api.CodeInvalid || len(rep.Errors) != 1 || rep.Errors[0].Line != tc.line || rep.Errors[0].Field != tc.field {
			t.Errorf("%s: want one error on line %d field %q, got %v %+v", tc.name, tc.line, tc.field, err, rep.Errors)
		}
	}
	if countPupils(t, s) != 0 {
		t.Fatal("something was imported")
	}
}
