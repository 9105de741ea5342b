package sim

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/diemdanh/diemdanh/models/match"
)

// synthPhotos builds selection inputs from synthetic 128-d reference
// descriptors: each person has a random base at length 0.7 (two bases are
// about 1.0 apart, beyond dlibRefSameFace), and each photo adds noise of
// the given length (0.02: very consistent, 0.15: ordinary). A noise of -1
// puts the photo on a fresh base: somebody else filed under the name.
type synthPerson struct {
	set, name string
	noise     []float64
}

func synthPhotos(people []synthPerson) []selPhoto {
	rng := rand.New(rand.NewPCG(11, 12))
	vec := func(length float64) match.Descriptor {
		d := make(match.Descriptor, 128)
		n := 0.0
		for i := range d {
			d[i] = float32(rng.NormFloat64())
			n += float64(d[i]) * float64(d[i])
		}
		for i := range d {
			d[i] *= float32(length / math.Sqrt(n))
		}
		return d
	}
	var out []selPhoto
	for _, p := range people {
		base := vec(0.7)
		for i, noise := range p.noise {
			ref := vec(0.7)
			if noise >= 0 {
				e := vec(noise)
				for j := range ref {
					ref[j] = base[j] + e[j]
				}
			}
			key := p.set + ":" + p.name
			ph := selPhoto{Idx: len(out), Rel: fmt.Sprintf("%s/%s/%d.jpg", p.set, p.name, i), Person: key, Name: p.name, Set: p.set, Ref: ref}
			if p.set == "scut" {
				ph.Person, ph.Name, ph.Crowd = fmt.Sprintf("scut:%s%d", p.name, i), fmt.Sprintf("%s%d", p.name, i), true
			}
			out = append(out, ph)
		}
	}
	return out
}

func repeat(v float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// synthSets is a small world with every case the rules handle.
var synthSets = []synthPerson{
	{"faces", "bona", []float64{0.15, 0.15}},                             // two photos: a visitor, twice
	{"faces", "elkie", []float64{0.15}},                                  // one photo: a visitor
	{"faces", "luda", []float64{0.15, -1}},                               // two photos that disagree: never used
	{"faces", "seulgi", repeat(0.15, 3)},                                 // also in kpop, with fewer photos: never used
	{"kpop", "irene", []float64{0.15, 0.02, 0.15, -1, 0.02, 0.15, 0.15}}, // 6 consistent + somebody else
	{"kpop", "seulgi", repeat(0.15, 5)},
	{"casia", "000", repeat(0.15, 5)},
	{"casia", "001", repeat(0.15, 3)},
	{"scut", "af", repeat(0.15, 10)}, // ten one-photo strangers
}

func synthOptions() selectOptions {
	return selectOptions{Seed: 5, CrowdEnrolled: 4, Visitors: -1, MinEnrolledPassages: 8, Sets: []string{"faces", "kpop", "casia", "scut"}}
}

// checkPlan asserts the invariants every suite must keep and returns the
// walks per day.
func checkPlan(t *testing.T, photos []selPhoto, plan *suitePlan) [][2]int {
	t.Helper()
	enrolled := map[string]string{} // photo → student
	inGallery := map[string]bool{}  // person key
	for _, p := range append(append([]*suitePerson(nil), plan.Pupils...), plan.Crowd...) {
		if p.SID == "" || inGallery[p.Key] {
			t.Fatalf("person %s: student ID %q or enrolled twice", p.Key, p.SID)
		}
		inGallery[p.Key] = true
		for _, ph := range p.Enrol {
			if s, dup := enrolled[ph.Rel]; dup {
				t.Fatalf("%s enrols %s and %s", ph.Rel, s, p.SID)
			}
			enrolled[ph.Rel] = p.SID
		}
	}
	walked := map[string]int{}
	var perDay [][2]int
	if len(plan.DayWalks) != plan.Days {
		t.Fatalf("%d days of walks for %d days", len(plan.DayWalks), plan.Days)
	}
	for d, walks := range plan.DayWalks {
		var n [2]int
		for _, w := range walks {
			if prev, dup := walked[w.Photo.Rel]; dup {
				t.Fatalf("%s walked on day %d and day %d", w.Photo.Rel, prev, d+1)
			}
			walked[w.Photo.Rel] = d + 1
			if _, ok := enrolled[w.Photo.Rel]; ok {
				t.Fatalf("enrolment photo %s walked on day %d", w.Photo.Rel, d+1)
			}
			if w.Person == nil {
				if inGallery[w.Photo.Person] {
					t.Fatalf("visitor %s (%s) is in the gallery", w.Photo.Rel, w.Photo.Person)
				}
				n[1]++
				continue
			}
			if w.Person.Key != w.Photo.Person || !inGallery[w.Person.Key] || w.Person.Walks[d] != w.Photo {
				t.Fatalf("day %d: %s walks as %s", d+1, w.Photo.Rel, w.Person.Key)
			}
			n[0]++
		}
		perDay = append(perDay, n)
	}
	for i := 1; i < len(perDay); i++ {
		if a, b := perDay[0][1], perDay[i][1]; a-b > 1 || b-a > 1 {
			t.Fatalf("visitors not spread evenly: %v", perDay)
		}
	}
	return perDay
}

func TestSelectSuite(t *testing.T) {
	photos := synthPhotos(synthSets)
	cases := []struct {
		name    string
		edit    func(*selectOptions)
		days    int
		perDay  [][2]int
		visSets map[string]int // visitor passages by set
		limits  string
		err     string
	}{
		{name: "automatic days reach the enrolled passages", days: 3,
			// pupils irene (4 walks), kpop seulgi (3), casia 000 (3), 001 (1);
			// visitors bona ×2, elkie, and 6 strangers not enrolled.
			perDay: [][2]int{{4, 3}, {3, 3}, {3, 3}}, visSets: map[string]int{"faces": 3, "scut": 6},
			limits: "3 days: the fewest giving at least 8 enrolled passages (10; photos allow up to 4 days)"},
		{name: "days as asked", edit: func(o *selectOptions) { o.Days = 2 }, days: 2,
			perDay: [][2]int{{4, 4}, {3, 5}}, visSets: map[string]int{"faces": 3, "scut": 6}, limits: "2 days, as asked"},
		{name: "days capped by the photos", edit: func(o *selectOptions) { o.Days = 9 }, days: 4,
			perDay: [][2]int{{4, 2}, {3, 2}, {3, 2}, {1, 3}}, visSets: map[string]int{"faces": 3, "scut": 6},
			limits: "9 days asked (--days), but no pupil has a photo left after day 4"},
		{name: "too few passages possible", edit: func(o *selectOptions) { o.MinEnrolledPassages = 400 }, days: 4,
			perDay: [][2]int{{4, 2}, {3, 2}, {3, 2}, {1, 3}}, visSets: map[string]int{"faces": 3, "scut": 6},
			limits: "every pupil's photos walked, and still only 11 enrolled passages"},
		{name: "visitors capped take held-back people first", edit: func(o *selectOptions) { o.Visitors = 4 }, days: 3,
			perDay: [][2]int{{4, 1}, {3, 1}, {3, 2}}, visSets: map[string]int{"faces": 3, "scut": 1}},
		{name: "whole crowd enrolled", edit: func(o *selectOptions) { o.CrowdEnrolled = 10 }, days: 3,
			perDay: [][2]int{{4, 1}, {3, 1}, {3, 1}}, visSets: map[string]int{"faces": 3}},
		{name: "too few crowd faces", edit: func(o *selectOptions) { o.CrowdEnrolled = 11 }, err: "only 10 usable crowd photos"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := synthOptions()
			if c.edit != nil {
				c.edit(&o)
			}
			var warn bytes.Buffer
			plan, err := selectSuite(photos, o, &warn)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("got %v, want an error with %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			perDay := checkPlan(t, photos, plan)
			if plan.Days != c.days || !slices.Equal(perDay, c.perDay) {
				t.Fatalf("days %d per day %v, want %d %v", plan.Days, perDay, c.days, c.perDay)
			}
			vis := map[string]int{}
			for _, st := range plan.Stats {
				if st.VisitorPassages > 0 {
					vis[st.Set] = st.VisitorPassages
				}
			}
			if fmt.Sprint(vis) != fmt.Sprint(c.visSets) {
				t.Errorf("visitor passages by set %v, want %v", vis, c.visSets)
			}
			if !strings.Contains(plan.Limits, c.limits) {
				t.Errorf("limits %q lack %q", plan.Limits, c.limits)
			}
			if len(plan.Crowd) != o.CrowdEnrolled {
				t.Errorf("%d crowd faces enrolled, want %d", len(plan.Crowd), o.CrowdEnrolled)
			}
		})
	}
}

// TestSelectSuiteRules checks who is a pupil and from which photos, the
// notes and the per-set counts.
func TestSelectSuiteRules(t *testing.T) {
	photos := synthPhotos(synthSets)
	var warn bytes.Buffer
	plan, err := selectSuite(photos, synthOptions(), &warn)
	if err != nil {
		t.Fatal(err)
	}
	pupils := map[string]*suitePerson{}
	for _, p := range plan.Pupils {
		pupils[p.Key] = p
	}
	var keys []string
	for k := range pupils {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"casia:000", "casia:001", "kpop:irene", "kpop:seulgi"}; !slices.Equal(keys, want) {
		t.Fatalf("pupils %v, want %v", keys, want)
	}
	// Irene is enrolled from her two least noisy photos; the photo of
	// somebody else filed under her name never walks.
	irene := pupils["kpop:irene"]
	if got := []string{irene.Enrol[0].Rel, irene.Enrol[1].Rel}; !slices.Equal(got, []string{"kpop/irene/1.jpg", "kpop/irene/4.jpg"}) {
		t.Errorf("irene enrolled from %v", got)
	}
	for _, w := range irene.Walks {
		if w.Rel == "kpop/irene/3.jpg" {
			t.Error("the photo of somebody else walks as irene")
		}
	}
	for _, note := range []string{"kpop/irene/3.jpg does not look like", "the photos of luda disagree",
		`"faces:seulgi" and "kpop:seulgi" may be the same person in two folders; using only kpop:seulgi`} {
		if !strings.Contains(warn.String(), note) {
			t.Errorf("notes lack %q:\n%s", note, warn.String())
		}
	}
	want := map[string]SuiteSource{
		"faces": {Set: "faces", People: 4, HeldBack: 2, VisitorPhotos: 3, VisitorPassages: 3, Inconsistent: 2 + 3},
		"kpop":  {Set: "kpop", People: 2, Pupils: 2, Inconsistent: 1, EnrolledPassages: 6, ExhaustedAfter: 4},
		"casia": {Set: "casia", People: 2, Pupils: 2, EnrolledPassages: 4, ExhaustedAfter: 3},
		"scut":  {Set: "scut", People: 10, CrowdEnrolled: 4, VisitorPhotos: 6, VisitorPassages: 6},
	}
	for _, st := range plan.Stats {
		if *st != want[st.Set] {
			t.Errorf("%s: %+v, want %+v", st.Set, *st, want[st.Set])
		}
	}
	if _, err := selectSuite(synthPhotos([]synthPerson{{"faces", "bona", []float64{0.15, 0.15}}}), synthOptions(), io.Discard); err == nil ||
		!strings.Contains(err.Error(), "nobody can walk as a pupil") {
		t.Errorf("no pupils: %v", err)
	}
}

// TestSelectSuiteSeed: the same inputs give the same plan; another seed
// changes the walk order, the crowd chosen and the IDs, never the
// enrolment photos.
func TestSelectSuiteSeed(t *testing.T) {
	photos := synthPhotos(synthSets)
	plan, err := selectSuite(photos, synthOptions(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	fingerprint := func(p *suitePlan) (string, string) {
		var walks strings.Builder
		var enrol []string
		for d, ws := range p.DayWalks {
			for _, w := range ws {
				fmt.Fprintf(&walks, "%d %s;", d, w.Photo.Rel)
			}
		}
		for _, q := range append(append([]*suitePerson(nil), p.Pupils...), p.Crowd...) {
			fmt.Fprintf(&walks, "%s=%s;", q.SID, q.Key)
			if !q.Enrol[0].Crowd {
				enrol = append(enrol, fmt.Sprintf("%s %s %s", q.Key, q.Enrol[0].Rel, q.Enrol[1].Rel))
			}
		}
		slices.Sort(enrol)
		return walks.String(), strings.Join(enrol, "; ")
	}
	again, err := selectSuite(photos, synthOptions(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	o := synthOptions()
	o.Seed = 6
	other, err := selectSuite(photos, o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	w1, e1 := fingerprint(plan)
	w2, e2 := fingerprint(again)
	w3, e3 := fingerprint(other)
	if w1 != w2 || e1 != e2 || plan.Limits != again.Limits {
		t.Fatal("the same seed gave another plan")
	}
	if w1 == w3 {
		t.Error("another seed gave the same walks")
	}
	if e1 != e3 {
		t.Errorf("the enrolment photos depend on the seed:\n%s\n%s", e1, e3)
	}
}
