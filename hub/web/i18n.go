package web

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

//go:embed i18n/*.json
var i18nFS embed.FS

// Langs are the UI languages, the default first.
var Langs = []string{"vi", "en"}

// Catalogue holds every UI string per language (i18n/<lang>.json).
type Catalogue struct {
	m map[string]map[string]string
}

// LoadCatalogue reads the embedded catalogues and checks that every
// language has exactly the keys of Vietnamese.
func LoadCatalogue() (*Catalogue, error) {
	c := &Catalogue{m: map[string]map[string]string{}}
	for _, l := range Langs {
		b, err := i18nFS.ReadFile("i18n/" + l + ".json")
		if err != nil {
			return nil, fmt.Errorf("web: i18n: %w", err)
		}
		var m map[string]string
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("web: i18n/%s.json: %w", l, err)
		}
		c.m[l] = m
	}
	var missing []string
	for k := range c.m["vi"] {
		for _, l := range Langs[1:] {
			if _, ok := c.m[l][k]; !ok {
				missing = append(missing, l+":"+k)
			}
		}
	}
	for _, l := range Langs[1:] {
		for k := range c.m[l] {
			if _, ok := c.m["vi"][k]; !ok {
				missing = append(missing, "vi:"+k)
			}
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, fmt.Errorf("web: i18n keys missing: %v", missing)
	}
	return c, nil
}

// T returns the string of key in lang (the key itself when unknown, so a
// missing string is visible rather than blank).
func (c *Catalogue) T(lang, key string) string {
	if s, ok := c.m[lang][key]; ok {
		return s
	}
	if s, ok := c.m["vi"][key]; ok {
		return s
	}
	return key
}

// Keys returns the catalogue of lang (for tests).
func (c *Catalogue) Keys(lang string) map[string]string { return c.m[lang] }

// Dates shown to people read day first, dd/mm/yyyy, in both UI languages:
// the Vietnamese convention (05/12/2026 is 5 December), kept on English
// pages too so a printout or a screenshot reads the same whatever the
// language. URLs, forms' hidden values, the database and CSV data columns
// keep ISO yyyy-mm-dd for machines.
const (
	displayDateLayout = "02/01/2006"
	isoDateLayout     = "2006-01-02"
	// DateHint is the format shown next to date fields and as placeholder.
	DateHint = "dd/mm/yyyy"
)

// FormatDate shows an ISO day (yyyy-mm-dd) to a reader of lang: dd/mm/yyyy
// in both languages (lang keeps the choice in this one place). Anything
// else is returned unchanged (never hidden).
func FormatDate(lang, iso string) string {
	t, err := time.Parse(isoDateLayout, iso)
	if err != nil {
		return iso
	}
	return t.Format(displayDateLayout)
}

// ParseDate reads a day typed by a person — dd/mm/yyyy, also d/m/yyyy and
// with "-" or "." between the parts — or an ISO yyyy-mm-dd (older links,
// bookmarks), and returns it as ISO yyyy-mm-dd. The error says what is
// wrong: empty, not a date, a month outside 1–12, a day the month does not
// have.
func ParseDate(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errors.New("no date given; want dd/mm/yyyy")
	}
	sep := strings.IndexAny(s, "/-.")
	if sep < 0 {
		return "", fmt.Errorf("%q is not a date; want dd/mm/yyyy", s)
	}
	parts := strings.Split(s, s[sep:sep+1])
	if len(parts) != 3 {
		return "", fmt.Errorf("%q is not a date; want dd/mm/yyyy", s)
	}
	d, m, y := parts[0], parts[1], parts[2]
	if len(d) == 4 { // year first: ISO yyyy-mm-dd
		d, y = y, d
	}
	day, err := dateNumber(d, 1, 2)
	if err == nil {
		var month, year int
		if month, err = dateNumber(m, 1, 2); err == nil {
			if year, err = dateNumber(y, 4, 4); err == nil {
				return checkDate(s, day, month, year)
			}
		}
	}
	return "", fmt.Errorf("%q is not a date; want dd/mm/yyyy: %w", s, err)
}

// checkDate returns day/month/year as ISO, or says which part is wrong.
func checkDate(s string, day, month, year int) (string, error) {
	if year < 1900 || year > 2999 {
		return "", fmt.Errorf("%q: year %d is out of range", s, year)
	}
	if month < 1 || month > 12 {
		return "", fmt.Errorf("%q: there is no month %d; want dd/mm/yyyy", s, month)
	}
	last := time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day()
	if day < 1 || day > last {
		return "", fmt.Errorf("%q: month %02d/%d has days 1–%d, not %d", s, month, year, last, day)
	}
	return time.Date(year, time.Month(month), day, 0, 0, 0, 0, time.UTC).Format(isoDateLayout), nil
}

// dateNumber parses a part of a date of minLen..maxLen ASCII digits.
func dateNumber(s string, minLen, maxLen int) (int, error) {
	if len(s) < minLen || len(s) > maxLen {
		return 0, fmt.Errorf("%q should have %d–%d digits", s, minLen, maxLen)
	}
	n := 0
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, fmt.Errorf("%q is not a number", s)
		}
		n = n*10 + int(r-'0')
	}
	return n, nil
}
