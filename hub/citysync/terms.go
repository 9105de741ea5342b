package citysync

import (
	"fmt"
	"strconv"
	"time"
)

// termSpan is one term with inclusive YYYY-MM-DD bounds (strings compare
// in date order).
type termSpan struct {
	Year       string
	Term       int
	Start, End string
}

func parseTerm(t Term) (termSpan, error) {
	m := yearRe.FindStringSubmatch(t.SchoolYear)
	if m == nil {
		return termSpan{}, fmt.Errorf("school_year %q: want YYYY-YYYY", t.SchoolYear)
	}
	a, _ := strconv.Atoi(m[1])
	b, _ := strconv.Atoi(m[2])
	if b != a+1 {
		return termSpan{}, fmt.Errorf("school_year %q: years must follow each other", t.SchoolYear)
	}
	if t.Term != 1 && t.Term != 2 {
		return termSpan{}, fmt.Errorf("term %d: want 1 or 2", t.Term)
	}
	s, err1 := time.Parse(time.DateOnly, t.Start)
	e, err2 := time.Parse(time.DateOnly, t.End)
	if err1 != nil || err2 != nil || e.Before(s) {
		return termSpan{}, fmt.Errorf("start %q / end %q: want YYYY-MM-DD with end >= start", t.Start, t.End)
	}
	return termSpan{t.SchoolYear, t.Term, t.Start, t.End}, nil
}

// terms resolves the term of a school day: explicit config terms first,
// then the city's records.terms, then the month-day rule.
type terms struct {
	explicit []termSpan
	city     []termSpan
	rule     TermRule
}

func newTerms(cfg Config) terms {
	t := terms{rule: cfg.TermRule}
	for _, c := range cfg.Terms {
		if s, err := parseTerm(c); err == nil {
			t.explicit = append(t.explicit, s)
		}
	}
	return t
}

// of returns the term holding day (YYYY-MM-DD), or false in the holidays.
func (t terms) of(day string) (termSpan, bool) {
	if len(t.explicit) > 0 {
		return find(t.explicit, day)
	}
	if s, ok := find(t.city, day); ok {
		return s, true
	}
	return t.byRule(day)
}

func find(spans []termSpan, day string) (termSpan, bool) {
	for _, s := range spans {
		if s.Start <= day && day <= s.End {
			return s, true
		}
	}
	return termSpan{}, false
}

func (t terms) byRule(day string) (termSpan, bool) {
	d, err := time.Parse(time.DateOnly, day)
	if err != nil {
		return termSpan{}, false
	}
	y := d.Year()
	md := day[5:]
	r := t.rule
	term1 := func(start int) termSpan {
		t2, _ := time.Parse(time.DateOnly, fmt.Sprintf("%04d-%s", start+1, r.Term2Start))
		return termSpan{fmt.Sprintf("%d-%d", start, start+1), 1,
			fmt.Sprintf("%04d-%s", start, r.Term1Start), t2.AddDate(0, 0, -1).Format(time.DateOnly)}
	}
	switch {
	case md >= r.Term1Start:
		return term1(y), true
	case md < r.Term2Start:
		return term1(y - 1), true
	case md <= r.YearEnd:
		return termSpan{fmt.Sprintf("%d-%d", y-1, y), 2,
			fmt.Sprintf("%04d-%s", y, r.Term2Start), fmt.Sprintf("%04d-%s", y, r.YearEnd)}, true
	default:
		return termSpan{}, false
	}
}
