package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/diemdanh/diemdanh/hub/consent"
	"github.com/diemdanh/diemdanh/hub/roster"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// simAssets are the gate video, its ground truth and the gallery that
// `edge simulate` made for the demo.
type simAssets struct {
	video, gallery string
	truth          struct {
		FPS      float64 `json:"fps"`
		Frames   int     `json:"frames"`
		Passages []struct {
			StudentID string `json:"student_id"`
			Name      string `json:"name"`
			Photo     string `json:"photo"`
		} `json:"passages"`
	}
	g      *match.Gallery
	names  map[string]string // student ID → the name shown
	people []string          // for the banner: who is enrolled, who walks
}

func (s *simAssets) seconds() float64 {
	if s.truth.FPS <= 0 {
		return 0
	}
	return float64(s.truth.Frames) / s.truth.FPS
}

// demoSource is where the demo's pupils come from.
type demoSource struct {
	photos   string // folders for edge simulate, comma-separated
	duration string // edge simulate --duration ("0": just long enough for everyone)
	stamp    string // assets made from another source (or embedder) are made again
	name     func(label string) string
	describe func(walked map[string]string) []string
}

// chooseDemoSource returns the shared test photos when o.TestData is set,
// else the demo photos laid out under demoDir/photos; with demo photos
// missing it returns no source and what is missing.
func chooseDemoSource(o DemoOptions, demoDir string) (*demoSource, []string, error) {
	if o.TestData != "" {
		faces := filepath.Join(o.TestData, "faces")
		if !dirExists(faces) {
			return nil, nil, fmt.Errorf("demo: test photos not found at %s (--testdata)", faces)
		}
		// The idol crops (asian/kpop), when present, add 15 people with
		// several photos each: arrivals every few seconds.
		photos := faces
		if kpop := filepath.Join(o.TestData, "asian", "kpop"); dirExists(kpop) {
			photos += "," + kpop
		}
		return &demoSource{photos: photos, duration: "20", stamp: "testdata " + photos, name: demoName,
			describe: func(map[string]string) []string { return []string{"the people of the test photos in " + photos} }}, nil, nil
	}
	if missing := missingDemoPhotos(o.Photos); len(missing) > 0 {
		return nil, missing, nil
	}
	dst := filepath.Join(demoDir, "photos")
	if err := layoutDemoPhotos(o.Photos, dst); err != nil {
		return nil, nil, err
	}
	names := map[string]string{}
	for _, p := range demoPeople() {
		names[p.Label] = p.Name
	}
	name := func(label string) string {
		if n := names[label]; n != "" {
			return n
		}
		return demoName(label)
	}
	return &demoSource{photos: dst, duration: "0", stamp: "demo-photos " + demoPhotoPackage + " layout 1", name: name,
		describe: describeDemoPeople}, nil, nil
}

// demoAssets makes (once per source and embedder) the synthetic gate
// video, its ground truth and the gallery of the people in it, made by
// embedder (the hub's enrol.embedder), with `edge simulate`. Without the
// demo photos it returns no assets and what is missing.
func demoAssets(ctx context.Context, o DemoOptions, demoDir, embedder string, log *slog.Logger, stderr io.Writer) (*simAssets, []string, error) {
	model, ok := faceengine.EmbedderModel(embedder)
	if !ok {
		return nil, nil, conf.Fieldf("enrol.embedder", "unknown embedder %q", embedder)
	}
	src, missing, err := chooseDemoSource(o, demoDir)
	if err != nil || src == nil {
		return nil, missing, err
	}
	s := &simAssets{video: filepath.Join(demoDir, "gate.avi"), gallery: filepath.Join(demoDir, "gallery.json")}
	truth := filepath.Join(demoDir, "truth.json")
	stampFile, stamp := filepath.Join(demoDir, "assets.stamp"), src.stamp+"\nembedder "+model.String()+"\n"
	if b, err := os.ReadFile(stampFile); err != nil || string(b) != stamp || !filesExist(s.video, s.gallery, truth) {
		log.Info("making the synthetic gate video from the demo's photos (once)", "photos", src.photos)
		args := []string{"simulate", "--photos", src.photos, "--out", s.video + ".tmp.avi", "--truth", truth + ".tmp",
			"--gallery-out", s.gallery + ".tmp", "--school", DemoSchool, "--seed", "1", "--duration", src.duration, "--embedder", model.Name}
		if err := runChild(ctx, o.EdgeBin, args, stderr, log); err != nil {
			return nil, nil, fmt.Errorf("demo: edge simulate: %w", err)
		}
		for _, p := range [][2]string{{s.video + ".tmp.avi", s.video}, {truth + ".tmp", truth}, {s.gallery + ".tmp", s.gallery}} {
			if err := os.Rename(p[0], p[1]); err != nil {
				return nil, nil, fmt.Errorf("demo: %w", err)
			}
		}
		if err := conf.WriteFileAtomic(stampFile, []byte(stamp), 0o640); err != nil {
			return nil, nil, fmt.Errorf("demo: %w", err)
		}
	}
	return s, nil, s.load(truth, src)
}

// load reads the truth and the gallery and names the people.
func (s *simAssets) load(truth string, src *demoSource) error {
	b, err := os.ReadFile(truth)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if err := json.Unmarshal(b, &s.truth); err != nil {
		return fmt.Errorf("demo: %s: %w", truth, err)
	}
	if _, s.g, err = wire.LoadGalleryFile(s.gallery); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	s.names = map[string]string{}
	walked := map[string]string{}
	for _, p := range s.truth.Passages {
		if p.StudentID != "" {
			s.names[p.StudentID] = src.name(p.Name)
			walked[p.Name] = filepath.Base(p.Photo)
		}
	}
	s.people = src.describe(walked)
	return nil
}

// walkers names the pupils who walk through the gate: "Joe Biden and
// Barack Obama", or "the pupils" when there are more than three.
func (s *simAssets) walkers() string {
	var names []string
	seen := map[string]bool{}
	for _, p := range s.truth.Passages {
		if n := s.names[p.StudentID]; p.StudentID != "" && n != "" && !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	switch {
	case len(names) == 0 || len(names) > 3:
		return "the pupils"
	case len(names) == 1:
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

func filesExist(paths ...string) bool {
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			return false
		}
	}
	return true
}

func dirExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

func demoName(label string) string {
	if label == "" {
		return ""
	}
	return strings.ToUpper(label[:1]) + label[1:]
}

// demoSeed is what seedDemo returns.
type demoSeed struct {
	gatePassword string
	names        map[string]string // student ID → the name shown
}

// seedDemo creates (idempotently) the demo school and class, the pupils
// with consent and their encrypted templates from the simulator's gallery
// (without sim: one pupil with consent and no face, to enrol from the
// browser), and the demo gate with a fresh password.
func seedDemo(ctx context.Context, a *App, sim *simAssets) (demoSeed, error) {
	r := a.Mods.Roster
	seed := demoSeed{names: map[string]string{}}
	if _, err := r.PutSchool(ctx, roster.School{ID: DemoSchool, Name: "Trường THCS Demo", Level: "lower_secondary"}); err != nil {
		return seed, fmt.Errorf("demo: %w", err)
	}
	if _, err := r.Class(ctx, DemoClass); err != nil {
		if _, err := r.PutClass(ctx, roster.Class{ID: DemoClass, SchoolID: DemoSchool, Name: "6A", Grade: 6,
			StartTime: "07:00", LateAfterMin: 15, AbsentCutoff: "09:00", Active: true}); err != nil {
			return seed, fmt.Errorf("demo: %w", err)
		}
	}
	if sim == nil {
		seed.names[demoPlaceholderPupil] = demoPlaceholderName
	} else {
		for _, id := range sim.g.PersonIDs() {
			seed.names[id] = sim.names[id]
			if seed.names[id] == "" {
				seed.names[id] = "Học sinh " + id[len(id)-4:]
			}
		}
	}
	for id, name := range seed.names {
		if err := seedPupil(ctx, a, id, name); err != nil {
			return seed, err
		}
		if sim != nil {
			if err := seedTemplates(ctx, a, id, sim.g); err != nil {
				return seed, err
			}
		}
	}
	var err error
	seed.gatePassword, err = seedGate(ctx, r)
	return seed, err
}

// seedPupil puts the pupil in the demo class with a recorded consent.
func seedPupil(ctx context.Context, a *App, id, name string) error {
	if _, err := a.Mods.Roster.PutPupil(ctx, roster.Pupil{ID: id, SchoolID: DemoSchool, ClassID: DemoClass, FullName: name,
		DateOfBirth: "2014-01-01", Active: true}); err != nil {
		return fmt.Errorf("demo: pupil %s: %w", id, err)
	}
	c := a.Mods.Consent
	if c == nil {
		return nil
	}
	if cur, _ := c.Valid(ctx, id); cur != nil {
		return nil
	}
	if _, err := c.Record(ctx, "demo", consent.Grant{PupilID: id, GuardianName: "Phụ huynh (demo)", PupilConsented: true,
		// The demo's consent also allows gate snapshots, so the board shows each arrival's face crop.
		ScopeFace: true, ScopeSnapshots: true, DocumentRef: "demo consent form"}); err != nil {
		return fmt.Errorf("demo: consent %s: %w", id, err)
	}
	return nil
}

// seedTemplates stores the pupil's gallery descriptors unless the pupil
// already has templates of the gallery's model (a data folder may hold
// another model's).
func seedTemplates(ctx context.Context, a *App, id string, g *match.Gallery) error {
	have, err := a.Mods.Templates.List(ctx, id)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	for _, t := range have {
		if t.Model == g.Model.String() {
			return nil
		}
	}
	for _, d := range g.Descriptors(id) {
		if _, err := a.Mods.Templates.Add(ctx, id, d, g.Model, match.Quality{}, nil); err != nil {
			return fmt.Errorf("demo: template %s: %w", id, err)
		}
	}
	return nil
}

// seedGate creates the demo gate, or gives it a fresh password.
func seedGate(ctx context.Context, r *roster.Store) (string, error) {
	if _, err := r.Gate(ctx, DemoGate); err != nil {
		cred, err := r.CreateGate(ctx, roster.Gate{ID: DemoGate, SchoolID: DemoSchool, Name: "Cổng chính (demo)", Direction: wire.DirectionIn})
		if err != nil {
			return "", fmt.Errorf("demo: %w", err)
		}
		return cred.Password, nil
	}
	cred, err := r.RotateGatePassword(ctx, DemoGate)
	if err != nil {
		return "", fmt.Errorf("demo: %w", err)
	}
	return cred.Password, nil
}
