package sim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/diemdanh/diemdanh/edge/pipeline"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// suiteGenVersion changes whenever the same inputs would give another
// suite, so older cached suites are regenerated.
const suiteGenVersion = 1

// File names inside a suite's folder.
const (
	suiteManifest   = "suite.json"
	suiteGallery    = "gallery.json"
	suiteRefGallery = "gallery-reference.json"
	suiteAnalysis   = "analysis.json"
)

// SuiteOptions configure a suite of school days (`edge simulate --suite`).
type SuiteOptions struct {
	Dir string
	// Photos are the source folders; the set of each is named by its
	// folder (faces, kpop, casia-facev5 → casia, scut-fbp5500 → scut). A
	// scut set is a crowd: one person per photo.
	Photos       []string
	Seed         int64
	Days         int // 0: the fewest days giving MinEnrolledPassages
	ScutEnrolled int // crowd faces enrolled as pupils who never walk
	Visitors     int // visitor passages over the suite; -1: every held-back photo
	// MinEnrolledPassages is what automatic days aim for.
	MinEnrolledPassages int
	School              string
	FPS                 float64
	Width, Height       int
	MinFace, MaxFace    int
	// AnalysisCache is the per-photo analysis cache; "" means
	// Dir/analysis.json, "-" none.
	AnalysisCache string
}

// DefaultSuiteOptions returns the defaults of `edge simulate --suite`.
func DefaultSuiteOptions() SuiteOptions {
	o := DefaultOptions()
	return SuiteOptions{Seed: 1, ScutEnrolled: 1000, Visitors: 400, MinEnrolledPassages: 400, School: o.School,
		FPS: o.FPS, Width: o.Width, Height: o.Height, MinFace: o.MinFace, MaxFace: o.MaxFace}
}

// DefaultSuitePhotos returns the shared photo sets under the test data
// folder root.
func DefaultSuitePhotos(root string) []string {
	return []string{filepath.Join(root, "faces"), filepath.Join(root, "asian", "kpop"),
		filepath.Join(root, "asian", "casia-facev5"), filepath.Join(root, "asian", "scut-fbp5500")}
}

// Validate names the first bad option.
func (o SuiteOptions) Validate() error {
	single := Options{Photos: o.Photos, Out: "-", TruthOut: "-", GalleryOut: "-", School: o.School, FPS: o.FPS,
		Width: o.Width, Height: o.Height, MinFace: o.MinFace, MaxFace: o.MaxFace, MaxEnrol: enrolPhotos, People: -1, Visitors: -1}
	switch {
	case o.Dir == "":
		return conf.Fieldf("suite", "a folder is required")
	case o.Days < 0 || o.Days > 1000:
		return conf.Fieldf("days", "must be 0 (automatic) .. 1000")
	case o.ScutEnrolled < 0 || o.ScutEnrolled > wire.MaxGalleryPeople/2:
		return conf.Fieldf("scut-enrolled", "must be 0..%d", wire.MaxGalleryPeople/2)
	case o.Visitors < -1:
		return conf.Fieldf("visitors", "must be -1 (all) or more")
	case o.MinEnrolledPassages < 1:
		return conf.Fieldf("min-enrolled-passages", "must be at least 1")
	}
	return single.Validate()
}

// sourceSpec is one source folder of a suite.
type sourceSpec struct {
	Dir   string `json:"dir"`
	Set   string `json:"set"`
	Crowd bool   `json:"crowd"`
}

// suiteSources names each folder's set: the folder's name up to its
// first '-', lower case. The scut set is a crowd of one-photo strangers.
// Folders are made absolute, so a relative and an absolute name of the
// same folder share the suite's key and the analysis cache.
func suiteSources(dirs []string) ([]sourceSpec, error) {
	var out []sourceSpec
	seen := map[string]string{}
	for _, d := range dirs {
		d, err := filepath.Abs(d)
		if err != nil {
			return nil, conf.Fieldf("photos", "%v", err)
		}
		set, _, _ := strings.Cut(strings.ToLower(filepath.Base(d)), "-")
		if prev, dup := seen[set]; dup {
			return nil, conf.Fieldf("photos", "%s and %s are both set %q", prev, d, set)
		}
		seen[set] = d
		out = append(out, sourceSpec{Dir: d, Set: set, Crowd: set == "scut"})
	}
	return out, nil
}

// SuiteSummary is printed as one JSON line by `edge simulate --suite`.
type SuiteSummary struct {
	Manifest         string         `json:"manifest"`
	Cached           bool           `json:"cached"` // the suite existed with the same key
	Days             int            `json:"days"`
	Frames           int            `json:"frames"`
	GallerySize      int            `json:"gallery_size"`
	ScutEnrolled     int            `json:"scut_enrolled"`
	WalkingPupils    int            `json:"walking_pupils"`
	EnrolledPassages int            `json:"enrolled_passages"`
	VisitorPassages  int            `json:"visitor_passages"`
	EnrolledBySet    map[string]int `json:"enrolled_by_set"`
	VisitorsBySet    map[string]int `json:"visitors_by_set"`
	PerDay           [][2]int       `json:"per_day"` // [enrolled, visitor] passages of day 1, 2, …
	Limits           string         `json:"limits"`
	Embedder         string         `json:"embedder"`
	ElapsedS         float64        `json:"elapsed_s"`
}

func summaryOf(s *Suite, manifest string, cached bool, start time.Time) *SuiteSummary {
	sum := &SuiteSummary{Manifest: manifest, Cached: cached, Days: len(s.Days), GallerySize: s.GallerySize,
		ScutEnrolled: s.ScutEnrolled, WalkingPupils: s.WalkingPupils, EnrolledPassages: s.EnrolledPassages,
		VisitorPassages: s.VisitorPassages, EnrolledBySet: map[string]int{}, VisitorsBySet: map[string]int{},
		Limits: s.Limits, Embedder: s.Embedder, ElapsedS: math.Round(time.Since(start).Seconds()*10) / 10}
	for _, d := range s.Days {
		sum.Frames += d.Frames
		sum.PerDay = append(sum.PerDay, [2]int{d.EnrolledPassages, d.VisitorPassages})
	}
	for _, src := range s.Sources {
		if src.EnrolledPassages > 0 {
			sum.EnrolledBySet[src.Set] = src.EnrolledPassages
		}
		if src.VisitorPassages > 0 {
			sum.VisitorsBySet[src.Set] = src.VisitorPassages
		}
	}
	return sum
}

// GenerateSuite builds a suite in o.Dir: one video and truth per school
// day, one gallery of the embedder's descriptors, one of the reference
// model's, and the manifest (suite.json), written last. A folder that
// already holds a suite with the same key and all its files is left as it
// is (SuiteSummary.Cached).
func GenerateSuite(ctx context.Context, o SuiteOptions, eng *faceengine.Engine, warn io.Writer) (*SuiteSummary, error) {
	start := time.Now()
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("simulate: %w", err)
	}
	if warn == nil {
		warn = io.Discard
	}
	specs, err := suiteSources(o.Photos)
	if err != nil {
		return nil, fmt.Errorf("simulate: %w", err)
	}
	photos, sizes, err := collectSuite(specs)
	if err != nil {
		return nil, fmt.Errorf("simulate: %w", err)
	}
	key, err := suiteKey(o, specs, eng.Model(), photos, sizes)
	if err != nil {
		return nil, err
	}
	manifest := filepath.Join(o.Dir, suiteManifest)
	if s := cachedSuite(manifest, key); s != nil {
		return summaryOf(s, manifest, true, start), nil
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("simulate: %w", err)
	}
	// A manifest left from other options must not vouch for the files
	// rewritten below if this run stops half-way.
	if err := os.Remove(manifest); err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("simulate: %w", err)
	}
	s, err := buildSuite(ctx, o, specs, photos, sizes, eng, warn)
	if err != nil {
		return nil, err
	}
	s.Key = key
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := conf.WriteFileAtomic(manifest, append(b, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("simulate: %w", err)
	}
	return summaryOf(s, manifest, false, start), nil
}

// buildSuite analyses the photos, selects, and writes the galleries and
// every day's video and truth; it returns the manifest without its key.
func buildSuite(ctx context.Context, o SuiteOptions, specs []sourceSpec, photos []photo, sizes []int64, eng *faceengine.Engine, warn io.Writer) (*Suite, error) {
	ref, closeRef, err := eng.ReferenceEngine()
	if err != nil {
		return nil, fmt.Errorf("simulate: reference engine: %w", err)
	}
	defer closeRef()
	cache := o.AnalysisCache
	switch cache {
	case "":
		cache = filepath.Join(o.Dir, suiteAnalysis)
	case "-":
		cache = ""
	}
	ana, skipped, err := analyseCached(ctx, eng, ref, photos, sizes, cache, warn)
	if err != nil {
		return nil, err
	}
	sel := make([]selPhoto, len(ana))
	sets := make([]string, len(specs))
	for i, sp := range specs {
		sets[i] = sp.Set
	}
	for i, a := range ana {
		sel[i] = selPhoto{Idx: i, Rel: a.Rel, Person: a.Person, Name: a.Name, Set: specs[a.Source].Set, Crowd: specs[a.Source].Crowd, Ref: a.Ref}
	}
	plan, err := selectSuite(sel, selectOptions{Seed: o.Seed, Days: o.Days, CrowdEnrolled: o.ScutEnrolled, Visitors: o.Visitors,
		MinEnrolledPassages: o.MinEnrolledPassages, Sets: sets}, warn)
	if err != nil {
		return nil, err
	}
	s := &Suite{Format: SuiteFormat, Seed: o.Seed, School: o.School, Embedder: eng.Model().String(),
		Reference: ref.Model().String(), FPS: o.FPS, Width: o.Width, Height: o.Height,
		MinDescribePx: pipeline.DefaultConfig().MinDescribePx, Limits: plan.Limits, ScutEnrolled: len(plan.Crowd),
		WalkingPupils: len(plan.Pupils), Gallery: suiteGallery, ReferenceGallery: suiteRefGallery}
	if err := writeSuiteGalleries(o, s, plan, ana, eng.Model(), ref.Model(), warn); err != nil {
		return nil, err
	}
	for d := 1; d <= plan.Days; d++ {
		day, err := renderDay(ctx, o, s.MinDescribePx, plan, d, ana)
		if err != nil {
			return nil, err
		}
		s.Days = append(s.Days, day)
		s.EnrolledPassages += day.EnrolledPassages
		s.VisitorPassages += day.VisitorPassages
	}
	counts := map[int]int{}
	for _, ph := range photos {
		counts[ph.Source]++
	}
	for i, st := range plan.Stats {
		st.Dir, st.Photos, st.Skipped = specs[i].Dir, counts[i], skipped[i]
		s.Sources = append(s.Sources, *st)
	}
	return s, nil
}

// collectSuite lists the photos of every source with their sizes; a
// crowd set's photos are one person each, named by the file.
func collectSuite(specs []sourceSpec) ([]photo, []int64, error) {
	dirs := make([]string, len(specs))
	for i, sp := range specs {
		dirs[i] = sp.Dir
	}
	photos, err := collect(dirs)
	if err != nil {
		return nil, nil, err
	}
	sizes := make([]int64, len(photos))
	for i := range photos {
		ph := &photos[i]
		if specs[ph.Source].Crowd {
			base := filepath.Base(ph.Path)
			ph.Name = strings.ToLower(strings.TrimSuffix(base, filepath.Ext(base)))
			ph.Person = fmt.Sprintf("%d:%s", ph.Source, ph.Name)
		}
		st, err := os.Stat(ph.Path)
		if err != nil {
			return nil, nil, fmt.Errorf("photos: %w", err)
		}
		sizes[i] = st.Size()
	}
	return photos, sizes, nil
}

// suiteKey hashes everything a suite is made from.
func suiteKey(o SuiteOptions, specs []sourceSpec, model match.ModelID, photos []photo, sizes []int64) (string, error) {
	type photoKey struct {
		Path string `json:"path"`
		Size int64  `json:"size"`
	}
	in := struct {
		Version       int          `json:"version"`
		Options       SuiteOptions `json:"options"`
		Sources       []sourceSpec `json:"sources"`
		Embedder      string       `json:"embedder"`
		Reference     string       `json:"reference"`
		MinDescribePx int          `json:"min_describe_px"`
		Photos        []photoKey   `json:"photos"`
	}{suiteGenVersion, o, specs, model.String(), faceengine.ReferenceModel.String(), pipeline.DefaultConfig().MinDescribePx, nil}
	// Where the outputs and the analysis cache go does not change them;
	// the folders are in Sources, made absolute.
	in.Options.Dir, in.Options.AnalysisCache, in.Options.Photos = "", "", nil
	for i, ph := range photos {
		in.Photos = append(in.Photos, photoKey{ph.Path, sizes[i]})
	}
	b, err := json.Marshal(in)
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:]), nil
}

// cachedSuite returns the suite at manifest if it has key and all its
// files exist.
func cachedSuite(manifest, key string) *Suite {
	s, err := LoadSuite(manifest)
	if err != nil || s.Key != key {
		return nil
	}
	for _, f := range s.Files() {
		if st, err := os.Stat(f); err != nil || st.Size() == 0 {
			return nil
		}
	}
	return s
}

// writeSuiteGalleries writes the two galleries (every walking pupil from
// their enrolment photos, every enrolled crowd face from its photo) and
// lists the pupils in the manifest. A walking pupil the embedder cannot
// describe from any enrolment photo is an error; a crowd face it cannot
// describe is left out of its gallery with a warning.
func writeSuiteGalleries(o SuiteOptions, s *Suite, plan *suitePlan, ana []*analysed, model, refModel match.ModelID, warn io.Writer) error {
	everyone := append(append([]*suitePerson(nil), plan.Pupils...), plan.Crowd...)
	sort.Slice(everyone, func(i, j int) bool { return everyone[i].SID < everyone[j].SID })
	g, rg := match.NewGallery(1, model), match.NewGallery(1, refModel)
	for _, p := range everyone {
		sp := SuitePupil{StudentID: p.SID, Name: p.Name, Set: p.Set, Walks: min(len(p.Walks), plan.Days)}
		n := 0
		for _, ph := range p.Enrol {
			sp.Enrolment = append(sp.Enrolment, ph.Rel)
			if err := rg.Add(p.SID, ph.Ref); err != nil {
				return fmt.Errorf("simulate: %w", err)
			}
			if d := ana[ph.Idx].Desc; d != nil {
				if err := g.Add(p.SID, d); err != nil {
					return fmt.Errorf("simulate: %w", err)
				}
				n++
			}
		}
		switch {
		case n == 0 && len(p.Walks) > 0:
			return fmt.Errorf("simulate: %s cannot describe any enrolment photo of %s (%s)", model.Name, p.Name, p.Key)
		case n == 0:
			fmt.Fprintf(warn, "simulate: %s cannot describe %s; left out of its gallery\n", model.Name, p.Enrol[0].Rel)
		}
		s.Pupils = append(s.Pupils, sp)
	}
	s.GallerySize, s.ReferenceGallerySize = g.People(), rg.People()
	for _, out := range []struct {
		g    *match.Gallery
		name string
	}{{g, s.Gallery}, {rg, s.ReferenceGallery}} {
		b, err := wire.DocFromGallery(o.School, out.g).Encode()
		if err != nil {
			return err
		}
		if _, _, err := wire.DecodeGallery(b); err != nil {
			return fmt.Errorf("simulate: built an invalid gallery: %w", err)
		}
		if err := conf.WriteFileAtomic(filepath.Join(o.Dir, out.name), b, 0o600); err != nil {
			return fmt.Errorf("simulate: %w", err)
		}
	}
	return nil
}
