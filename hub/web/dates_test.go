package web

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestParseDateFormatDate: the one parser of typed dates and the one
// formatter of shown dates.
func TestParseDateFormatDate(t *testing.T) {
	cases := []struct {
		in, want string
		err      string // part of the error, "" for none
	}{
		{"05/12/2026", "2026-12-05", ""},
		{"5/12/2026", "2026-12-05", ""},
		{" 05/12/2026 ", "2026-12-05", ""},
		{"12/05/2026", "2026-05-12", ""}, // day first: 12 May, never 5 December
		{"05-12-2026", "2026-12-05", ""},
		{"05.12.2026", "2026-12-05", ""},
		{"29/02/2028", "2028-02-29", ""},
		{"2026-12-05", "2026-12-05", ""}, // ISO, old links
		{"31/02/2026", "", "month 02/2026 has days 1–28, not 31"},
		{"29/02/2026", "", "has days 1–28, not 29"},
		{"31/04/2026", "", "has days 1–30, not 31"},
		{"00/01/2026", "", "not 0"},
		{"2026-13-01", "", "there is no month 13"},
		{"01/13/2026", "", "there is no month 13"},
		{"12/31/2026", "", "there is no month 31"}, // US order is refused, not reinterpreted
		{"", "", "no date given; want dd/mm/yyyy"},
		{"   ", "", "no date given"},
		{"hôm nay", "", "is not a date; want dd/mm/yyyy"},
		{"05/12/26", "", "should have 4–4 digits"},
		{"05/12", "", "is not a date"},
		{"05/12/2026/", "", "is not a date"},
		{"05/12-2026", "", "is not a date"},
		{"0x/12/2026", "", "is not a number"},
		{"05/12/0001", "", "year 1 is out of range"},
	}
	for _, tc := range cases {
		got, err := ParseDate(tc.in)
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("ParseDate(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseDate(%q) = %q, %v; want an error with %q", tc.in, got, err, tc.err)
		case tc.err == "":
			// What is shown parses back to the same day.
			if back, err := ParseDate(FormatDate("vi", got)); err != nil || back != got {
				t.Errorf("ParseDate(FormatDate(%q)) = %q, %v", got, back, err)
			}
		}
	}
	for _, tc := range []struct{ lang, in, want string }{
		{"vi", "2026-12-05", "05/12/2026"},
		{"en", "2026-12-05", "05/12/2026"},
		{"vi", "2026-05-12", "12/05/2026"},
		{"vi", "not-a-day", "not-a-day"}, // shown as is, never blank
		{"vi", "", ""},
	} {
		if got := FormatDate(tc.lang, tc.in); got != tc.want {
			t.Errorf("FormatDate(%s, %q) = %q, want %q", tc.lang, tc.in, got, tc.want)
		}
	}
}

// TestDatesReadDayFirst: the board, term page, printouts and exports show
// dates dd/mm/yyyy in both languages; a typed dd/mm/yyyy is redirected to
// the ISO address; a bad date is refused with a message that says how to
// type it; CSV file names stay ISO.
func TestDatesReadDayFirst(t *testing.T) {
	f := newFixture(t)
	c := f.client(t)
	c.login("lan")
	for _, lang := range []string{"vi", "en"} {
		c.do("GET", "/lang/"+lang+"?next=/password", nil, nil)
		resp, body := c.do("GET", "/teacher/class/c1?day=2026-05-12", nil, nil)
		if resp.StatusCode != 200 || !strings.Contains(body, `id="day" name="day" value="12/05/2026"`) ||
			strings.Contains(body, `type="date"`) {
			t.Errorf("%s board: %d, day field not 12/05/2026 text:\n%s", lang, resp.StatusCode, excerpt(body, `id="day"`))
		}
		for _, want := range []string{`id="day-prev" href="/teacher/class/c1?day=2026-05-11"`, `id="day-next" href="/teacher/class/c1?day=2026-05-13"`,
			`day.csv?day=2026-05-12"`, `day/print?day=2026-05-12"`} {
			if !strings.Contains(body, want) {
				t.Errorf("%s board lacks %s", lang, want)
			}
		}
		_, body = c.do("GET", "/teacher/class/c1/day/print?day=2026-05-12", nil, nil)
		if !strings.Contains(body, "— 12/05/2026</h1>") || !strings.Contains(body, `id="print-day">12/05/2026<`) {
			t.Errorf("%s printable day: %s", lang, excerpt(body, "<h1>"))
		}
		_, body = c.do("GET", "/teacher/class/c1/term?from=2026-01-05&to=2026-01-09", nil, nil)
		if !strings.Contains(body, `value="05/01/2026"`) || !strings.Contains(body, `value="09/01/2026"`) || strings.Contains(body, `type="date"`) {
			t.Errorf("%s term page fields: %s", lang, excerpt(body, `id="from"`))
		}
		_, body = c.do("GET", "/teacher/class/c1/term/print?from=2026-01-05&to=2026-01-09", nil, nil)
		if !strings.Contains(body, "(05/01/2026 – 09/01/2026)</h1>") || !strings.Contains(body, `id="term-from">05/01/2026<`) {
			t.Errorf("%s printable term: %s", lang, excerpt(body, "<h1>"))
		}
	}
	// Typed day-first dates go to the ISO address (what the form submits).
	for path, want := range map[string]string{
		"/teacher/class/c1?day=" + url.QueryEscape("12/05/2026") + "&missing=1": "/teacher/class/c1?day=2026-05-12&missing=1",
		"/teacher/class/c1/term?from=5/1/2026&to=09/01/2026":                    "/teacher/class/c1/term?from=2026-01-05&to=2026-01-09",
		"/teacher/class/c1/day.csv?day=12/05/2026":                              "/teacher/class/c1/day.csv?day=2026-05-12",
	} {
		resp, _ := c.do("GET", path, nil, nil)
		if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || loc != want {
			t.Errorf("GET %s: %d → %q, want 303 → %q", path, resp.StatusCode, loc, want)
		}
	}
	resp, _ := c.do("GET", "/teacher/class/c1/day.csv?day=2026-05-12", nil, nil)
	if cd := resp.Header.Get("Content-Disposition"); !strings.Contains(cd, `diemdanh-c1-2026-05-12.csv`) {
		t.Errorf("CSV file name %q, want ISO", cd)
	}
	// Bad dates: 400 with how to type one (the page is in English now).
	for _, bad := range []string{"31/02/2026", "2026-13-01", "12/31/2026", "x"} {
		resp, body := c.do("GET", "/teacher/class/c1?day="+url.QueryEscape(bad), nil, nil)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "day/month/year (dd/mm/yyyy)") {
			t.Errorf("bad day %q: %d %s", bad, resp.StatusCode, excerpt(body, "<main"))
		}
	}
	c.do("GET", "/lang/vi?next=/password", nil, nil)
	resp, body := c.do("GET", "/teacher/class/c1/term?from=31/02/2026", nil, nil)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "ngày/tháng/năm (dd/mm/yyyy)") {
		t.Errorf("bad term start: %d %s", resp.StatusCode, excerpt(body, "<main"))
	}
}

// excerpt returns some of body around the first marker (for messages).
func excerpt(body, marker string) string {
	i := strings.Index(body, marker)
	if i < 0 {
		i = 0
	}
	return body[i:min(len(body), i+400)]
}
