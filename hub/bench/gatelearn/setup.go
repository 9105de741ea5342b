package gatelearn

import (
	"context"
	"fmt"
	"math"
	"sort"

	"github.com/diemdanh/diemdanh/hub/consent"
	"github.com/diemdanh/diemdanh/hub/roster"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// setUp creates the school with a class per photo set, turns on the
// school's policy of keeping gate captures as templates, and enrols every
// pupil: the roster entry, a consent recorded under that policy (face
// attendance, photos, snapshots, the pupil's own consent) and one
// enrolment template per descriptor of the suite's gallery.
func (h *Hub) setUp(ctx context.Context) error {
	ctx = roster.WithActor(ctx, AdminActor, "")
	if _, err := h.roster.PutSchool(ctx, roster.School{ID: h.cfg.SchoolID, Name: "Trường " + h.cfg.SchoolID}); err != nil {
		return fmt.Errorf("gatelearn: school: %w", err)
	}
	if _, err := h.consent.SetSchoolPolicy(ctx, AdminActor, h.cfg.SchoolID, true); err != nil {
		return fmt.Errorf("gatelearn: consent policy: %w", err)
	}
	descs := map[string][]string{}
	for _, p := range h.cfg.Suite.People {
		descs[p.StudentID] = p.Descriptors
	}
	for _, p := range h.cfg.Pupils {
		ds, ok := descs[p.ID]
		if !ok {
			return fmt.Errorf("gatelearn: pupil %s is not in the suite's gallery", p.ID)
		}
		if err := h.enrolPupil(ctx, p, ds); err != nil {
			return err
		}
	}
	return nil
}

// classOf returns the class of a photo set, creating it on first use.
func (h *Hub) classOf(ctx context.Context, set string) (string, error) {
	if id, ok := h.classes[set]; ok {
		return id, nil
	}
	id := fmt.Sprintf("lop-%d", len(h.classes)+1)
	if _, err := h.roster.PutClass(ctx, roster.Class{ID: id, SchoolID: h.cfg.SchoolID, Name: "Lớp " + set, Grade: 6, Active: true}); err != nil {
		return "", fmt.Errorf("gatelearn: class %s: %w", set, err)
	}
	h.classes[set] = id
	return id, nil
}

// enrolPupil adds p to the roster, records its consent and stores its
// enrolment templates (base64 descriptors of the suite's gallery).
func (h *Hub) enrolPupil(ctx context.Context, p Pupil, descs []string) error {
	class, err := h.classOf(ctx, p.Set)
	if err != nil {
		return err
	}
	if _, err := h.roster.PutPupil(ctx, roster.Pupil{ID: p.ID, SchoolID: h.cfg.SchoolID, ClassID: class,
		FullName: p.Name, Active: true}); err != nil {
		return fmt.Errorf("gatelearn: pupil %s: %w", p.ID, err)
	}
	if _, err := h.consent.Record(ctx, AdminActor, consent.Grant{PupilID: p.ID, GuardianName: "Phụ huynh " + p.Name,
		PupilConsented: true, ScopeFace: true, ScopePhotos: true, ScopeSnapshots: true,
		DocumentRef: "DK-" + p.ID}); err != nil {
		return fmt.Errorf("gatelearn: consent of %s: %w", p.ID, err)
	}
	for _, b := range descs {
		d, err := match.ParseDescriptorBase64(b)
		if err != nil {
			return fmt.Errorf("gatelearn: pupil %s: %w", p.ID, err)
		}
		if _, err := h.tpl.Add(ctx, p.ID, d, h.cfg.Suite.Model, match.Quality{}, nil); err != nil {
			return fmt.Errorf("gatelearn: template of %s: %w", p.ID, err)
		}
	}
	return nil
}

// thresholdTolerance is how far the hub's served threshold may be from the
// gate's own calibration of the same descriptors (the same computation
// over the descriptors in another order).
const thresholdTolerance = 1e-6

// CheckFirstGallery checks that the gallery the gate downloaded equals the
// suite's: the same pupils with the same descriptors, and a served
// threshold equal to the gate's own calibration of the suite's gallery at
// Config.CalibrateFAR (what the gate decides with when the gallery carries
// none), so that day 1 with learning is day 1 without it.
func (h *Hub) CheckFirstGallery() error {
	doc, gal := h.Gallery()
	if gal == nil {
		return fmt.Errorf("gatelearn: the gate has no gallery")
	}
	suite, err := galleryOf(h.cfg.Suite)
	if err != nil {
		return err
	}
	if err := sameDescriptors(gal, suite); err != nil {
		return fmt.Errorf("gatelearn: the hub's first gallery is not the suite's: %w", err)
	}
	cal, err := match.CalibrateThreshold(suite, h.cfg.CalibrateFAR)
	if err != nil {
		return fmt.Errorf("gatelearn: calibrating the suite's gallery: %w", err)
	}
	if math.Abs(doc.Threshold-cal.Threshold) > thresholdTolerance {
		return fmt.Errorf("gatelearn: the hub serves threshold %g, the gate calibrates the suite's gallery at %g", doc.Threshold, cal.Threshold)
	}
	return nil
}

// galleryOf builds the match gallery of a document.
func galleryOf(doc *wire.GalleryDoc) (*match.Gallery, error) {
	b, err := doc.Encode()
	if err != nil {
		return nil, fmt.Errorf("gatelearn: suite gallery: %w", err)
	}
	_, g, err := wire.DecodeGallery(b)
	if err != nil {
		return nil, fmt.Errorf("gatelearn: suite gallery: %w", err)
	}
	return g, nil
}

// sameDescriptors reports the first difference between two galleries:
// the people, or a person's descriptors (as sets).
func sameDescriptors(got, want *match.Gallery) error {
	if got.Model != want.Model {
		return fmt.Errorf("model %s, want %s", got.Model, want.Model)
	}
	ids, wantIDs := got.PersonIDs(), want.PersonIDs()
	sort.Strings(ids)
	sort.Strings(wantIDs)
	if len(ids) != len(wantIDs) {
		return fmt.Errorf("%d people, want %d", len(ids), len(wantIDs))
	}
	for i, id := range ids {
		if id != wantIDs[i] {
			return fmt.Errorf("person %s where %s was expected", id, wantIDs[i])
		}
		if err := sameSet(got.Descriptors(id), want.Descriptors(id)); err != nil {
			return fmt.Errorf("pupil %s: %w", id, err)
		}
	}
	return nil
}

func sameSet(got, want []match.Descriptor) error {
	key := func(ds []match.Descriptor) []string {
		out := make([]string, len(ds))
		for i, d := range ds {
			out[i] = string(d.Bytes())
		}
		sort.Strings(out)
		return out
	}
	g, w := key(got), key(want)
	if len(g) != len(w) {
		return fmt.Errorf("%d descriptors, want %d", len(g), len(w))
	}
	for i := range g {
		if g[i] != w[i] {
			return fmt.Errorf("descriptor %d differs", i)
		}
	}
	return nil
}
