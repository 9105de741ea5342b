package sim

import (
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"sort"
	"strings"

	"github.com/diemdanh/diemdanh/models/match"
)

// This file decides a suite's people, enrolment photos, days and walks
// from the analysed photos' reference descriptors alone (no pixels), so
// the rules can be tested on synthetic descriptors.

// selPhoto is what the suite's selection knows of a usable photo.
type selPhoto struct {
	Idx    int    // index into the analysed photos
	Rel    string // as in the truth files
	Person string // person key, unique across sets
	Name   string // normalised name
	Set    string
	Crowd  bool // a one-photo face of a crowd set (SCUT): one person per photo
	Ref    match.Descriptor
}

// selectOptions are the selection's inputs besides the photos.
type selectOptions struct {
	Seed          int64
	Days          int // 0: automatic (see chooseDays)
	CrowdEnrolled int // crowd faces enrolled as pupils who never walk
	Visitors      int // visitor passages over the suite; -1: every held-back photo
	// MinEnrolledPassages is what automatic days aim for.
	MinEnrolledPassages int
	Sets                []string // set names in source order
}

// suitePerson is one person in the galleries.
type suitePerson struct {
	Key, Name, Set string
	SID            string
	Enrol          []*selPhoto
	Walks          []*selPhoto // Walks[d-1] walks on day d, for d <= the suite's days
}

// walk is one passage of a day before it is scheduled.
type walk struct {
	Photo  *selPhoto
	Person *suitePerson // nil for a visitor
}

// suitePlan is the selection's outcome.
type suitePlan struct {
	Days     int
	Pupils   []*suitePerson // walking pupils, by student ID
	Crowd    []*suitePerson // crowd faces enrolled, never walking
	DayWalks [][]walk       // [d-1]: the pupils walking on day d, then its visitors
	Stats    []*SuiteSource // per set, in selectOptions.Sets order
	Limits   string
}

// candidate is a person while selection runs.
type candidate struct {
	key, name, set string
	crowd          bool
	photos         []*selPhoto
}

// enrolPhotos is how many photos a walking pupil is enrolled from; a
// person needs one more to walk.
const enrolPhotos = 2

// selectSuite applies the suite's rules:
//   - a person's photos that do not look like the person's most
//     consistent photo (reference distance dlibRefSameFace) are never
//     used, nor is a person whose photos disagree, nor the smaller of two
//     people whose names match across sets;
//   - a person with three or more photos left is a walking pupil,
//     enrolled from its two most consistent photos; each later photo
//     walks on one day, in a seeded order;
//   - opts.CrowdEnrolled crowd faces (seeded choice) are enrolled and
//     never walk; the other crowd faces and the people with one or two
//     photos are visitors, each photo walking at most once in the suite,
//     spread evenly over the days.
func selectSuite(photos []selPhoto, o selectOptions, warn io.Writer) (*suitePlan, error) {
	plan := &suitePlan{}
	stats := map[string]*SuiteSource{}
	for _, s := range o.Sets {
		st := &SuiteSource{Set: s}
		stats[s] = st
		plan.Stats = append(plan.Stats, st)
	}
	cands := groupCandidates(photos, stats)
	cleanCandidates(cands, stats, warn)
	var heldBack []*selPhoto
	var crowd []*selPhoto
	for _, c := range cands {
		st := stats[c.set]
		switch {
		case c.crowd:
			crowd = append(crowd, c.photos[0])
		case len(c.photos) > enrolPhotos:
			plan.Pupils = append(plan.Pupils, newPupil(c, o.Seed))
			st.Pupils++
		case len(c.photos) > 0:
			heldBack = append(heldBack, c.photos...)
			st.HeldBack++
			st.VisitorPhotos += len(c.photos)
		}
	}
	if len(plan.Pupils) == 0 {
		return nil, fmt.Errorf("simulate: no person has %d or more usable photos of the same face; nobody can walk as a pupil", enrolPhotos+1)
	}
	crowdPool, err := enrolCrowd(plan, crowd, o, stats)
	if err != nil {
		return nil, err
	}
	assignSuiteIDs(append(append([]*suitePerson(nil), plan.Pupils...), plan.Crowd...), o.Seed)
	sort.Slice(plan.Pupils, func(i, j int) bool { return plan.Pupils[i].SID < plan.Pupils[j].SID })
	sort.Slice(plan.Crowd, func(i, j int) bool { return plan.Crowd[i].SID < plan.Crowd[j].SID })
	days, daysWhy := chooseDays(plan.Pupils, o)
	plan.Days = days
	visitors := chooseVisitors(heldBack, crowdPool, o)
	plan.DayWalks = dealWalks(plan.Pupils, visitors, days, stats)
	plan.Limits = limitsText(plan, daysWhy, len(heldBack), len(crowdPool), len(visitors))
	return plan, nil
}

// groupCandidates groups photos by person, in the photos' order.
func groupCandidates(photos []selPhoto, stats map[string]*SuiteSource) []*candidate {
	byKey := map[string]*candidate{}
	var out []*candidate
	for i := range photos {
		ph := &photos[i]
		c := byKey[ph.Person]
		if c == nil {
			c = &candidate{key: ph.Person, name: ph.Name, set: ph.Set, crowd: ph.Crowd}
			byKey[ph.Person] = c
			out = append(out, c)
			if stats[ph.Set] == nil {
				stats[ph.Set] = &SuiteSource{Set: ph.Set}
			}
			stats[ph.Set].People++
		}
		c.photos = append(c.photos, ph)
	}
	return out
}

// cleanCandidates drops the photos that do not look like the rest of
// their person's, people whose photos disagree, and the smaller of two
// people whose names match in two sets (they may be one person, who must
// never be both a pupil and a visitor). Crowd faces are one photo each
// and are not compared by name.
func cleanCandidates(cands []*candidate, stats map[string]*SuiteSource, warn io.Writer) {
	for _, c := range cands {
		if c.crowd || len(c.photos) < 2 {
			continue
		}
		refs := make([]match.Descriptor, len(c.photos))
		for i, p := range c.photos {
			refs[i] = p.Ref
		}
		_, keep := consistentWith(refs)
		var kept []*selPhoto
		for i, p := range c.photos {
			if keep[i] {
				kept = append(kept, p)
			} else {
				fmt.Fprintf(warn, "simulate: %s does not look like the other photos of %s; not used\n", p.Rel, c.name)
			}
		}
		if len(kept) < 2 {
			fmt.Fprintf(warn, "simulate: the photos of %s disagree; person not used\n", c.name)
			kept = nil
		}
		stats[c.set].Inconsistent += len(c.photos) - len(kept)
		c.photos = kept
	}
	for i, p := range cands {
		for _, q := range cands[i+1:] {
			if p.crowd || q.crowd || len(p.photos) == 0 || len(q.photos) == 0 || p.set == q.set || !sameName(p.name, q.name) {
				continue
			}
			loser, winner := q, p
			if len(q.photos) > len(p.photos) {
				loser, winner = p, q
			}
			fmt.Fprintf(warn, "simulate: %q and %q may be the same person in two folders; using only %s\n", p.key, q.key, winner.key)
			stats[loser.set].Inconsistent += len(loser.photos)
			loser.photos = nil
		}
	}
}

// consistentWith returns the descriptor with the most others within
// dlibRefSameFace (the first on ties) and which descriptors are within
// that distance of it (itself included).
func consistentWith(refs []match.Descriptor) (best int, keep []bool) {
	bestN := -1
	for i, a := range refs {
		n := 0
		for j, b := range refs {
			if i != j && match.Distance(a, b) < dlibRefSameFace {
				n++
			}
		}
		if n > bestN {
			best, bestN = i, n
		}
	}
	keep = make([]bool, len(refs))
	for i, a := range refs {
		keep[i] = i == best || match.Distance(a, refs[best]) < dlibRefSameFace
	}
	return best, keep
}

// newPupil enrols c from its enrolPhotos most consistent photos (the
// smallest summed reference distance to the person's other photos; path
// order on ties) and orders the rest to walk, shuffled by the seed and
// the person alone, so other people's photos do not change the order.
func newPupil(c *candidate, seed int64) *suitePerson {
	ph := append([]*selPhoto(nil), c.photos...)
	score := make(map[*selPhoto]float64, len(ph))
	for _, a := range ph {
		for _, b := range ph {
			if a != b {
				score[a] += match.Distance(a.Ref, b.Ref)
			}
		}
	}
	sort.SliceStable(ph, func(i, j int) bool {
		if score[ph[i]] != score[ph[j]] {
			return score[ph[i]] < score[ph[j]]
		}
		return ph[i].Rel < ph[j].Rel
	})
	walks := append([]*selPhoto(nil), ph[enrolPhotos:]...)
	sort.Slice(walks, func(i, j int) bool { return walks[i].Rel < walks[j].Rel })
	rng := seededRand(seed, "walks/"+c.key)
	rng.Shuffle(len(walks), func(i, j int) { walks[i], walks[j] = walks[j], walks[i] })
	return &suitePerson{Key: c.key, Name: c.name, Set: c.set, Enrol: ph[:enrolPhotos], Walks: walks}
}

// enrolCrowd enrols o.CrowdEnrolled crowd faces (a seeded choice) and
// returns the others, which may walk as visitors.
func enrolCrowd(plan *suitePlan, crowd []*selPhoto, o selectOptions, stats map[string]*SuiteSource) ([]*selPhoto, error) {
	if o.CrowdEnrolled > len(crowd) {
		return nil, fmt.Errorf("simulate: %d crowd faces to enrol (--scut-enrolled) but only %d usable crowd photos", o.CrowdEnrolled, len(crowd))
	}
	crowd = append([]*selPhoto(nil), crowd...)
	sort.Slice(crowd, func(i, j int) bool { return crowd[i].Rel < crowd[j].Rel })
	rng := seededRand(o.Seed, "crowd")
	rng.Shuffle(len(crowd), func(i, j int) { crowd[i], crowd[j] = crowd[j], crowd[i] })
	for _, ph := range crowd[:o.CrowdEnrolled] {
		plan.Crowd = append(plan.Crowd, &suitePerson{Key: ph.Person, Name: ph.Name, Set: ph.Set, Enrol: []*selPhoto{ph}})
		stats[ph.Set].CrowdEnrolled++
	}
	pool := crowd[o.CrowdEnrolled:]
	for _, ph := range pool {
		stats[ph.Set].VisitorPhotos++
	}
	return pool, nil
}

// chooseDays returns the number of days and why. Automatic: the fewest
// days that give o.MinEnrolledPassages enrolled passages, or every day
// some pupil still has a photo when no number of days gives that many.
// Asked for (o.Days): that many, but no more than the last day a pupil
// still has a photo.
func chooseDays(pupils []*suitePerson, o selectOptions) (int, string) {
	last := 0
	for _, p := range pupils {
		last = max(last, len(p.Walks))
	}
	passagesUpTo := func(n int) int {
		t := 0
		for _, p := range pupils {
			t += min(len(p.Walks), n)
		}
		return t
	}
	switch {
	case o.Days > last:
		return last, fmt.Sprintf("%d days asked (--days), but no pupil has a photo left after day %d", o.Days, last)
	case o.Days > 0:
		return o.Days, fmt.Sprintf("%d days, as asked (--days; photos allow up to %d)", o.Days, last)
	}
	for n := 1; n <= last; n++ {
		if t := passagesUpTo(n); t >= o.MinEnrolledPassages {
			return n, fmt.Sprintf("%d days: the fewest giving at least %d enrolled passages (%d; photos allow up to %d days)", n, o.MinEnrolledPassages, t, last)
		}
	}
	return last, fmt.Sprintf("%d days: every pupil's photos walked, and still only %d enrolled passages (fewer than %d)", last, passagesUpTo(last), o.MinEnrolledPassages)
}

// chooseVisitors picks the visitor photos: the held-back people's first,
// then crowd faces, up to o.Visitors (-1: all), in a seeded order.
func chooseVisitors(heldBack, crowdPool []*selPhoto, o selectOptions) []*selPhoto {
	hb := append([]*selPhoto(nil), heldBack...)
	seededRand(o.Seed, "held-back").Shuffle(len(hb), func(i, j int) { hb[i], hb[j] = hb[j], hb[i] })
	all := append(hb, crowdPool...) // crowdPool is already in a seeded order
	if o.Visitors >= 0 && o.Visitors < len(all) {
		all = all[:o.Visitors]
	}
	seededRand(o.Seed, "visitors").Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	return all
}

// dealWalks lists each day's walks: every pupil with a photo left for
// that day, then the day's even share of the visitors.
func dealWalks(pupils []*suitePerson, visitors []*selPhoto, days int, stats map[string]*SuiteSource) [][]walk {
	out := make([][]walk, days)
	for d := range days {
		for _, p := range pupils {
			if d < len(p.Walks) {
				out[d] = append(out[d], walk{Photo: p.Walks[d], Person: p})
				stats[p.Set].EnrolledPassages++
			}
		}
		for _, v := range visitors[d*len(visitors)/days : (d+1)*len(visitors)/days] {
			out[d] = append(out[d], walk{Photo: v})
			stats[v.Set].VisitorPassages++
		}
	}
	for _, p := range pupils {
		stats[p.Set].ExhaustedAfter = max(stats[p.Set].ExhaustedAfter, len(p.Walks))
	}
	return out
}

// limitsText says, for the manifest, what limits the days and passages.
func limitsText(plan *suitePlan, daysWhy string, heldBack, crowdPool, visitors int) string {
	parts := []string{daysWhy}
	for _, st := range plan.Stats {
		var walks []int
		for _, p := range plan.Pupils {
			if p.Set == st.Set {
				walks = append(walks, len(p.Walks))
			}
		}
		if len(walks) == 0 {
			continue
		}
		sort.Ints(walks)
		still := 0
		for _, w := range walks {
			if w >= plan.Days {
				still++
			}
		}
		parts = append(parts, fmt.Sprintf("%s: %d pupils with %d–%d photos to walk (median %d), exhausted after day %d; %d walking on day %d",
			st.Set, len(walks), walks[0], walks[len(walks)-1], walks[len(walks)/2], walks[len(walks)-1], still, plan.Days))
	}
	perDay := fmt.Sprintf("%d a day", visitors/plan.Days)
	if visitors%plan.Days != 0 {
		perDay = fmt.Sprintf("%d–%d a day", visitors/plan.Days, visitors/plan.Days+1)
	}
	parts = append(parts, fmt.Sprintf("visitors: %d passages from %d held-back photos (%d of people with 1–2 usable photos, %d crowd faces not enrolled), %s",
		visitors, heldBack+crowdPool, heldBack, crowdPool, perDay))
	return strings.Join(parts, "; ")
}

// assignSuiteIDs gives every person a synthetic student ID from the seed
// and the person key (studentID).
func assignSuiteIDs(ps []*suitePerson, seed int64) {
	sort.Slice(ps, func(i, j int) bool { return ps[i].Key < ps[j].Key })
	used := map[string]bool{}
	for _, p := range ps {
		p.SID = studentID(seed, p.Key, used)
	}
}

// studentID is a synthetic 12-digit personal ID (079 = Hồ Chí Minh City
// province code) derived from the seed and the person key only, so adding
// photos of others does not renumber anyone; used guards against a clash.
func studentID(seed int64, key string, used map[string]bool) string {
	for salt := 0; ; salt++ {
		h := fnv.New64a()
		fmt.Fprintf(h, "%d/%s/%d", seed, key, salt)
		sid := fmt.Sprintf("079%09d", h.Sum64()%1_000_000_000)
		if !used[sid] {
			used[sid] = true
			return sid
		}
	}
}

// seededRand is a generator for one purpose of one seed.
func seededRand(seed int64, purpose string) *rand.Rand {
	h := fnv.New64a()
	fmt.Fprintf(h, "%d/%s", seed, purpose)
	return rand.New(rand.NewPCG(uint64(seed), h.Sum64()))
}
