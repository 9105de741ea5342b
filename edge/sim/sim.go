// Package sim is the deterministic gate simulator behind `edge simulate`.
//
// From folders of face photos it builds a gallery of enrolled people
// (descriptors from some photos of each) and a 1280×720, 25 fps video in
// which people walk towards the camera, each using a photo that was NOT
// used for enrolment: faces grow from small to large over a static gate
// background, with motion blur, changing light, partial occlusion, two or
// three people at once, and visitors who are not in the gallery. A
// ground-truth JSON file lists every passage with its first and last
// visible frame. The same photos, models and seed give byte-identical
// truth and gallery files.
//
// Photo folders: a flat folder (or one with an images/ subfolder, like
// go-face's faces/) names a person by the file name without trailing digits
// (jimin.jpg, jimin2.jpg → jimin); otherwise a person is the image's
// parent folder (kpop/train/Irene/*.jpg). Labels by name are not fully
// trustworthy, so the simulator checks them with a face model: photos
// with other than exactly one face are skipped; of a person's photos only
// those near the person's most consistent photo are kept; a name that also
// appears (up to one letter) in another folder is kept only in the folder
// with more usable photos, so the same person can never be both enrolled
// and a "visitor".
//
// Every one of these selection decisions is made on the fixed reference
// model (faceengine.ReferenceModel, dlib-resnet-v1), never on the embedder
// asked for with --embedder, which only computes the gallery's
// descriptors. The same photos and seed therefore give the same truth file
// (people, photos, frames) whatever the embedder, so gate benchmarks of
// different embedders run on the same video, and no embedder gets to drop
// the people it finds hard from its own benchmark.
package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// Options configure a run.
type Options struct {
	Photos     []string
	Out        string // video (.avi, MJPG)
	TruthOut   string
	GalleryOut string
	Seed       int64
	Duration   float64 // seconds; 0 fits all passages
	People     int     // enrolled people who walk; -1 all
	Visitors   int     // visitors who walk; -1 all
	School     string
	FPS        float64
	Width      int
	Height     int
	MinFace    int // face width when a person appears, px
	MaxFace    int // face width nearest the camera, px
	MaxEnrol   int // enrolment photos per person
}

// DefaultOptions returns the defaults.
func DefaultOptions() Options {
	return Options{Seed: 1, People: -1, Visitors: -1, School: "demo", FPS: 25, Width: 1280, Height: 720,
		MinFace: 80, MaxFace: 240, MaxEnrol: 5}
}

// Validate names the first bad option.
func (o Options) Validate() error {
	switch {
	case len(o.Photos) == 0:
		return conf.Fieldf("photos", "at least one folder is required")
	case o.Out == "":
		return conf.Fieldf("out", "is required")
	case o.TruthOut == "":
		return conf.Fieldf("truth", "is required")
	case o.GalleryOut == "":
		return conf.Fieldf("gallery-out", "is required")
	case o.Duration < 0 || o.Duration > 3600:
		return conf.Fieldf("duration", "must be 0..3600 s")
	case o.People < -1 || o.Visitors < -1:
		return conf.Fieldf("people", "people and visitors must be -1 (all) or more")
	case !wire.ValidID(o.School):
		return conf.Fieldf("school", "invalid %q", o.School)
	case o.FPS < 1 || o.FPS > 120:
		return conf.Fieldf("fps", "must be 1..120")
	case o.Width < 320 || o.Height < 240 || o.Width > 3840 || o.Height > 2160:
		return conf.Fieldf("width", "frame must be 320×240 .. 3840×2160")
	case o.MinFace < 20 || o.MaxFace <= o.MinFace || o.MaxFace > spriteFace:
		return conf.Fieldf("min-face", "need 20 <= min-face < max-face <= %d", spriteFace)
	case o.MaxEnrol < 1 || o.MaxEnrol > wire.MaxDescriptorsPerPerson:
		return conf.Fieldf("max-enrol", "must be 1..%d", wire.MaxDescriptorsPerPerson)
	}
	return nil
}

// Summary is printed as one JSON line by Main.
type Summary struct {
	Video            string  `json:"video"`
	Truth            string  `json:"truth"`
	Gallery          string  `json:"gallery"`
	Frames           int     `json:"frames"`
	Seconds          float64 `json:"seconds"`
	Passages         int     `json:"passages"`
	EnrolledPassages int     `json:"enrolled_passages"`
	VisitorPassages  int     `json:"visitor_passages"`
	GalleryPeople    int     `json:"gallery_people"`
	Embedder         string  `json:"embedder"`  // the gallery's model
	Reference        string  `json:"reference"` // the model photos were selected with
	SkippedPhotos    int     `json:"skipped_photos"`
	ElapsedS         float64 `json:"elapsed_s"`
}

// person is one identity after checking its photos.
type person struct {
	key, name string
	photos    []*analysed
	sid       string
}

// Generate builds the gallery, the truth and the video.
func Generate(ctx context.Context, o Options, eng *faceengine.Engine, warn io.Writer) (*Summary, error) {
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("simulate: %w", err)
	}
	if warn == nil {
		warn = io.Discard
	}
	start := time.Now()
	all, err := collect(o.Photos)
	if err != nil {
		return nil, fmt.Errorf("simulate: %w", err)
	}
	all = capPerPerson(all, maxPhotosPerPerson)
	// Selection runs on the reference model; a second engine is loaded
	// only when eng computes other descriptors.
	ref, closeRef, err := eng.ReferenceEngine()
	if err != nil {
		return nil, fmt.Errorf("simulate: reference engine: %w", err)
	}
	defer closeRef()
	ana, err := analyse(ctx, eng, ref, all, warn)
	if err != nil {
		return nil, fmt.Errorf("simulate: %w", err)
	}
	defer func() {
		for _, a := range ana {
			a.Sprite.Close()
		}
	}()
	sum, err := generateFrom(ctx, o, ana, eng.Model(), warn)
	if err != nil {
		return nil, err
	}
	sum.SkippedPhotos = len(all) - len(ana)
	sum.ElapsedS = math.Round(time.Since(start).Seconds()*10) / 10
	return sum, nil
}

// generateFrom does everything after the photos have been analysed.
func generateFrom(ctx context.Context, o Options, ana []*analysed, model match.ModelID, warn io.Writer) (*Summary, error) {
	rng := rand.New(rand.NewPCG(uint64(o.Seed), 0x9e3779b97f4a7c15))
	enrolled, visitors := people(ana, warn)
	if len(enrolled) == 0 {
		return nil, errors.New("simulate: no person has two or more usable photos of the same face; nobody can be enrolled")
	}
	assignIDs(enrolled, o.Seed)

	// Gallery: every enrolled person, from photos other than the walked one.
	g := match.NewGallery(1, model)
	walkPhoto := map[string]*analysed{}
	for _, p := range enrolled {
		ph := append([]*analysed(nil), p.photos...)
		rng.Shuffle(len(ph), func(i, j int) { ph[i], ph[j] = ph[j], ph[i] })
		walkPhoto[p.key] = ph[0]
		n := 0
		for _, e := range ph[1:min(len(ph), o.MaxEnrol+1)] {
			if e.Desc == nil { // the embedder could not describe it (noted by analyse)
				continue
			}
			if err := g.Add(p.sid, e.Desc); err != nil {
				return nil, fmt.Errorf("simulate: %w", err)
			}
			n++
		}
		if n == 0 {
			return nil, fmt.Errorf("simulate: %s cannot describe any enrolment photo of %s (%s)", model.Name, p.name, p.key)
		}
	}
	doc := wire.DocFromGallery(o.School, g)
	galBytes, err := doc.Encode()
	if err != nil {
		return nil, err
	}
	if _, _, err := wire.DecodeGallery(galBytes); err != nil {
		return nil, fmt.Errorf("simulate: built an invalid gallery: %w", err)
	}

	// Who walks.
	walkers := append([]*person(nil), enrolled...)
	rng.Shuffle(len(walkers), func(i, j int) { walkers[i], walkers[j] = walkers[j], walkers[i] })
	if o.People >= 0 && o.People < len(walkers) {
		walkers = walkers[:o.People]
	}
	vis := append([]*person(nil), visitors...)
	rng.Shuffle(len(vis), func(i, j int) { vis[i], vis[j] = vis[j], vis[i] })
	if o.Visitors >= 0 && o.Visitors < len(vis) {
		vis = vis[:o.Visitors]
	}
	var ps []*passage
	for _, p := range walkers {
		ps = append(ps, &passage{a: walkPhoto[p.key], sid: p.sid, name: p.name, enrolled: true})
	}
	for _, p := range vis {
		ps = append(ps, &passage{a: p.photos[0], name: p.name})
	}
	rng.Shuffle(len(ps), func(i, j int) { ps[i], ps[j] = ps[j], ps[i] })
	frames := schedule(ps, o, rng)
	var kept []*passage
	for _, p := range ps {
		if p.start+p.frames <= frames {
			kept = append(kept, p)
		} else {
			fmt.Fprintf(warn, "simulate: %s does not fit in %.1f s; dropped (use a longer --duration)\n", p.name, o.Duration)
		}
	}
	ps = kept
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].start < ps[j].start })

	truth := Truth{Format: TruthFormat, FPS: o.FPS, Width: o.Width, Height: o.Height, Frames: frames, Seed: o.Seed}
	sum := &Summary{Video: o.Out, Truth: o.TruthOut, Gallery: o.GalleryOut, Frames: frames, Seconds: float64(frames) / o.FPS,
		GalleryPeople: g.People(), Embedder: model.String(), Reference: faceengine.ReferenceModel.String()}
	for i, p := range ps {
		truth.Passages = append(truth.Passages, Passage{ID: fmt.Sprintf("p%03d", i+1), StudentID: p.sid, Enrolled: p.enrolled,
			Name: p.name, Photo: p.a.Rel, FirstFrame: int64(p.start), LastFrame: int64(p.start + p.frames - 1),
			MinFacePx: int(math.Round(p.wmin)), MaxFacePx: int(math.Round(p.wmax)), Blur: p.blur > 0, Occluded: p.occEnd > 0})
		if p.enrolled {
			sum.EnrolledPassages++
		} else {
			sum.VisitorPassages++
		}
	}
	sum.Passages = len(ps)
	tb, err := json.MarshalIndent(truth, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := render(ctx, o, ps, frames); err != nil {
		return nil, err
	}
	if err := conf.WriteFileAtomic(o.TruthOut, append(tb, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("simulate: %w", err)
	}
	if err := conf.WriteFileAtomic(o.GalleryOut, galBytes, 0o600); err != nil {
		return nil, fmt.Errorf("simulate: %w", err)
	}
	return sum, nil
}

// people groups the analysed photos, checks each person's photos agree
// (on their reference descriptors only), resolves names found in two
// folders, and splits enrolled candidates (two or more consistent photos)
// from visitors (one photo).
func people(ana []*analysed, warn io.Writer) (enrolled, visitors []*person) {
	byKey := map[string]*person{}
	var order []*person
	for _, a := range ana {
		p := byKey[a.Person]
		if p == nil {
			p = &person{key: a.Person, name: a.Name}
			byKey[a.Person] = p
			order = append(order, p)
		}
		p.photos = append(p.photos, a)
	}
	for _, p := range order {
		if len(p.photos) < 2 {
			continue
		}
		refs := make([]match.Descriptor, len(p.photos))
		for i, a := range p.photos {
			refs[i] = a.Ref
		}
		_, ok := consistentWith(refs)
		var keep []*analysed
		for i, a := range p.photos {
			if ok[i] {
				keep = append(keep, a)
			} else {
				fmt.Fprintf(warn, "simulate: %s does not look like the other photos of %s; not used\n", a.Rel, p.name)
			}
		}
		if len(keep) < 2 {
			fmt.Fprintf(warn, "simulate: the photos of %s disagree; person not used\n", p.name)
			keep = nil
		}
		p.photos = keep
	}
	// A name in two folders may be one person: keep the folder with more photos.
	drop := map[*person]bool{}
	for i, p := range order {
		for _, q := range order[i+1:] {
			if p.photos == nil || q.photos == nil || p.photos[0].Source == q.photos[0].Source || !sameName(p.name, q.name) {
				continue
			}
			loser := q
			if len(q.photos) > len(p.photos) {
				loser = p
			}
			drop[loser] = true
			fmt.Fprintf(warn, "simulate: %q and %q may be the same person in two folders; using only %s\n", p.key, q.key, map[bool]string{true: q.key, false: p.key}[loser == p])
		}
	}
	for _, p := range order {
		switch {
		case drop[p] || len(p.photos) == 0:
		case len(p.photos) >= 2:
			enrolled = append(enrolled, p)
		default:
			visitors = append(visitors, p)
		}
	}
	return enrolled, visitors
}

// maxPhotosPerPerson bounds the photos analysed per person (the first
// ones by path), which keeps generation fast on large folders.
const maxPhotosPerPerson = 8

func capPerPerson(ps []photo, n int) []photo {
	count := map[string]int{}
	var out []photo
	for _, p := range ps {
		if count[p.Person] < n {
			count[p.Person]++
			out = append(out, p)
		}
	}
	return out
}

// dlibRefSameFace is the distance between two faceengine.ReferenceModel
// (dlib-resnet-v1) descriptors under which two photos filed under the same
// name are taken to show the same person (dlib's genuine median on East
// Asian faces is 0.39, its impostor median 0.50). It may be a constant
// because it is a data-cleaning rule on one fixed model, applied only to
// reference descriptors (analysed.Ref): it decides which labelled photos
// go into the simulation, never whether a face at the gate matches, and it
// is never applied to the descriptors of the embedder under test, whose
// distances have another scale and whose thresholds come from calibration.
const dlibRefSameFace = 0.5

// assignIDs gives every enrolled person a synthetic student ID
// (studentID) and sorts them by it.
func assignIDs(ps []*person, seed int64) {
	used := map[string]bool{}
	for _, p := range ps {
		p.sid = studentID(seed, p.key, used)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].sid < ps[j].sid })
}

// passage is one scheduled walk.
type passage struct {
	a        *analysed
	sid      string
	name     string
	set      string // the photo's set (suites only)
	enrolled bool

	start, frames  int
	x0, y0, x1, y1 float64
	wmin, wmax     float64
	gain           float64
	blur           int     // motion blur kernel length (0: none)
	blurDiag       bool    // diagonal instead of horizontal
	occStart       float64 // occlusion over t in [occStart, occEnd)
	occEnd         float64
	occSide        bool // occlude one side of the face instead of its lower part
	lane           int
}

// schedule places passages in time and in one of three lanes so that two
// or three people are in view at once without overlapping, and returns
// the number of frames of the video.
func schedule(ps []*passage, o Options, rng *rand.Rand) int {
	fps := o.FPS
	W, H := float64(o.Width), float64(o.Height)
	lanes := []float64{W * 0.26, W * 0.5, W * 0.74}
	laneFree := make([]int, len(lanes)) // first frame the lane is free
	meanGap := 0.95
	if o.Duration > 0 && len(ps) > 0 {
		meanGap = max(0.45, (o.Duration-1-2.8)/float64(len(ps)))
	}
	t := int(0.5 * fps)
	last := 0
	for _, p := range ps {
		p.frames = int((2.0 + 0.8*rng.Float64()) * fps)
		t += int(meanGap * (0.7 + 0.6*rng.Float64()) * fps)
		// The lane that frees first; wait for it if all are busy.
		best := 0
		for l := range lanes {
			if laneFree[l] < laneFree[best] || (laneFree[l] == laneFree[best] && rng.IntN(2) == 0) {
				best = l
			}
		}
		if laneFree[best] > t {
			t = laneFree[best]
		}
		p.start, p.lane = t, best
		// Leave the lane once the face has grown past most of its size.
		laneFree[best] = t + p.frames*7/10
		last = max(last, t+p.frames)
		cx := lanes[best] + (rng.Float64()-0.5)*W*0.06
		p.x0, p.y0 = cx, H*(0.44+0.05*rng.Float64())
		p.x1 = cx + (cx-W/2)*0.35 + (rng.Float64()-0.5)*W*0.04
		p.y1 = H * (0.52 + 0.05*rng.Float64())
		p.wmin = float64(o.MinFace) * (0.9 + 0.2*rng.Float64())
		p.wmax = float64(o.MaxFace) * (0.85 + 0.15*rng.Float64())
		p.gain = 0.75 + 0.45*rng.Float64()
		if rng.Float64() < 0.4 {
			p.blur = 5 + 2*rng.IntN(4) // 5, 7, 9, 11 px
			p.blurDiag = rng.IntN(2) == 0
		}
		if rng.Float64() < 0.3 {
			p.occStart = 0.1 + 0.4*rng.Float64()
			p.occEnd = p.occStart + 0.3
			p.occSide = rng.IntN(2) == 0
		}
	}
	frames := last + int(0.5*fps)
	if o.Duration > 0 {
		frames = int(math.Round(o.Duration * fps))
	}
	return frames
}

// faceAt returns the face width and centre of p at frame f.
func (p *passage) faceAt(f int) (w, cx, cy, t float64) {
	t = float64(f-p.start) / float64(max(p.frames-1, 1))
	// Perspective: the inverse size (distance) shrinks linearly in time.
	w = 1 / (1/p.wmin + (1/p.wmax-1/p.wmin)*t)
	return w, p.x0 + (p.x1-p.x0)*t, p.y0 + (p.y1-p.y0)*t, t
}

// blurredAt reports whether the renderer blurs p at t (0–1 along the
// walk): a passage with motion blur is blurred over its first 65 %.
func (p *passage) blurredAt(t float64) bool { return p.blur > 0 && t < blurUntil }

// blurUntil is the share of a blurred passage's walk that is blurred.
const blurUntil = 0.65

// occludedAt reports whether the renderer covers part of p's face at t.
func (p *passage) occludedAt(t float64) bool { return p.occEnd > 0 && t >= p.occStart && t < p.occEnd }
