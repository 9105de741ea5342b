package citysync

import "testing"

func TestTermOfDay(t *testing.T) {
	rule := Default().TermRule
	cases := []struct {
		day, year string
		term      int
		ok        bool
	}{
		{"2025-09-05", "2025-2026", 1, true},
		{"2025-12-31", "2025-2026", 1, true},
		{"2026-01-15", "2025-2026", 1, true},
		{"2026-01-16", "2025-2026", 2, true},
		{"2026-05-31", "2025-2026", 2, true},
		{"2026-06-01", "", 0, false},
		{"2025-08-20", "", 0, false},
		{"2028-02-29", "2027-2028", 2, true},
	}
	tt := terms{rule: rule}
	for _, c := range cases {
		s, ok := tt.of(c.day)
		if ok != c.ok || s.Year != c.year || s.Term != c.term {
			t.Errorf("%s: got %v %q term %d, want %v %q term %d", c.day, ok, s.Year, s.Term, c.ok, c.year, c.term)
		}
	}
	if s, _ := tt.of("2025-10-01"); s.Start != "2025-09-05" || s.End != "2026-01-15" {
		t.Errorf("term 1 bounds %s..%s", s.Start, s.End)
	}
	// The city's terms win over the rule; explicit config wins over both.
	tt.city = []termSpan{{"2025-2026", 2, "2026-01-12", "2026-05-25"}}
	if s, _ := tt.of("2026-01-13"); s.Term != 2 {
		t.Errorf("city term not used: %+v", s)
	}
	cfg := Default()
	cfg.Terms = []Term{{SchoolYear: "2025-2026", Term: 1, Start: "2025-09-08", End: "2026-01-10"}}
	if err := cfg.Validate("x"); err != nil {
		t.Fatal(err)
	}
	ex := newTerms(cfg)
	if _, ok := ex.of("2026-01-12"); ok {
		t.Error("explicit terms must be the only source when set")
	}
	cfg.Terms[0].SchoolYear = "2025-2027"
	cfg.DSN = "postgres://h/db"
	if err := cfg.Validate("city_sync"); err == nil {
		t.Error("bad school year accepted")
	}
}
