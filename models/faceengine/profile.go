package faceengine

import (
	"path/filepath"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/profile"
)

// DistanceProfile is what an embedder's real L2 distances mean, measured
// with `bin/edge eval -json` on ../shared/testdata/asian/casia-facev5
// (40 people × 5 ID-style photos) and asian/kpop (15 people, 391 crops,
// the harder set). Defaults that compare descriptors derive from it, so
// switching the embedder never leaves another model's constant in force.
// The gate's operating threshold itself is calibrated per gallery
// (match.CalibrateThreshold); VoteCap only bounds it.
type DistanceProfile struct {
	Model match.ModelID
	// SameMax: enrolment consistency — a new photo farther than this from
	// every one of the pupil's own templates is "not the same person". It
	// sits at the top of the genuine distribution (it only catches a
	// clearly different face; many impostor pairs are nearer).
	SameMax float64
	// DuplicateMax: a new template closer than this to ANOTHER pupil's
	// template is held for review. It sits in the impostor distribution's
	// low tail: the fraction of unrelated pairs sent to review.
	DuplicateMax float64
	// FeedbackMatchMax: on "not this pupil", the pupil's template nearest
	// to the event's face crop is excluded when within this distance. The
	// crop was accepted at the gate (≤ VoteCap), so this is at least
	// VoteCap.
	FeedbackMatchMax float64
	// VoteCap is the loosest threshold a gate ever accepts: the hub's or
	// the gate's calibrated threshold is capped to it, and it is the
	// fallback when a gallery is too small to calibrate.
	VoteCap float64
}

// DistanceProfiles holds the measured profile of each built-in embedder.
// Figures quoted are `bin/edge eval -json -embedder NAME DIR` quantiles
// (genuine/impostor p01…p99) on 2026-11-22. For the ONNX embedders the
// rule is the same for every model:
//
//	SameMax          = max genuine p99 of the two sets, rounded up to 0.05
//	DuplicateMax     = kpop impostor p01, rounded down to 0.01
//	VoteCap          = kpop impostor p01, rounded down to 0.01
//	FeedbackMatchMax = SameMax
//
// VoteCap was first the kpop impostor p05; on the gate benchmark made from
// ../shared/testdata/faces alone (6 enrolled people, so the gallery's own
// calibration has few impostor scores and lands near the cap) a visitor
// was then announced as a pupil at distances 1.04–1.10 with margins
// 0.08–0.14. At p01 the same run announces nobody wrongly and the casia
// and kpop runs lose nothing (deploy/PERFORMANCE.md "Gate recognition per embedder").
//
// dlib's values predate the rule and are kept (measured on the faces/
// test photos, see hub/README.md "Enrolment"); they sit at the same quantiles
// within a few hundredths.
var DistanceProfiles = map[string]DistanceProfile{
	// dlib: genuine p99 casia 0.489, kpop 0.548 (faces/ photos up to
	// 0.595) → 0.6; impostor p01 casia 0.403, kpop 0.362, p05 kpop 0.398
	// (faces/: 1.8 % of impostor pairs below 0.40) → duplicate 0.42,
	// vote cap 0.40 (the former fixed vote.threshold).
	match.DlibResNetV1.Name: {Model: match.DlibResNetV1, SameMax: 0.6, DuplicateMax: 0.42, FeedbackMatchMax: 0.6, VoteCap: 0.40},
	// faceplugin-mfn-v1: genuine p99 casia 1.221, kpop 1.293 → 1.30;
	// impostor kpop p01 0.955 → 0.95, p05 1.021 → 1.02.
	FacepluginMFNV1.Model.Name: {Model: FacepluginMFNV1.Model, SameMax: 1.30, DuplicateMax: 0.95, FeedbackMatchMax: 1.30, VoteCap: 0.95},
	// sface-2021dec-bq (yunet5.flip.3): genuine p99 casia 1.157, kpop
	// 1.175 → 1.20; impostor kpop p01 0.987 → 0.98, p05 1.048 (casia
	// impostor p01 1.141, p05 1.197; genuine median casia 0.651, kpop
	// 0.934). Version flip.2 (dlib's landmarks) had 1.25 and 1.01.
	SFace2021DecBQ.Model.Name: {Model: SFace2021DecBQ.Model, SameMax: 1.20, DuplicateMax: 0.98, FeedbackMatchMax: 1.20, VoteCap: 0.98},
	// fusion-sface-mfn-v1: genuine p99 casia 1.228, kpop 1.258 → 1.30;
	// impostor kpop p01 1.0004 → 1.00, p05 1.060 → 1.05 (1.0597).
	"fusion-sface-mfn-v1": {Model: FusionSpecs["fusion-sface-mfn-v1"].Model, SameMax: 1.30, DuplicateMax: 1.00, FeedbackMatchMax: 1.30, VoteCap: 1.00},
}

// ProfileFor returns the distance profile of an embedder name ("" = the
// default embedder); ok is false for an embedder nobody measured (an
// external or overridden ONNX spec), whose callers must then be given
// explicit distances.
func ProfileFor(name string) (DistanceProfile, bool) {
	if name == "" {
		name = match.DefaultEmbedder.Name
	}
	p, ok := DistanceProfiles[name]
	return p, ok && p.Model.Name == name
}

// ProfileOf is ProfileFor(m.Name) for a model of the same version.
func ProfileOf(m match.ModelID) (DistanceProfile, bool) {
	p, ok := ProfileFor(m.Name)
	return p, ok && p.Model == m
}

// FromFile is the distance profile a measured profile file gives.
func FromFile(f profile.File) DistanceProfile {
	return DistanceProfile{Model: f.Model, SameMax: f.SameMax, DuplicateMax: f.DuplicateMax,
		FeedbackMatchMax: f.FeedbackMatchMax, VoteCap: f.VoteCap}
}

// Profiles finds a model's distance profile: a custom model's from its
// measured profile file (engine.custom.profile), every other one's from
// DistanceProfiles. The zero value knows the built-in models only.
// Consumers (the gate's vote, the hub's enrolment and automatic templates)
// ask it by model ID and need not know whether the model is custom.
type Profiles struct {
	custom *DistanceProfile
}

// Of returns model's distance profile; ok is false for a model nobody
// measured.
func (p Profiles) Of(model match.ModelID) (DistanceProfile, bool) {
	if p.custom != nil && p.custom.Model == model {
		return *p.custom, true
	}
	return ProfileOf(model)
}

// ProfileCommand is the command line that measures a custom model's
// profile on the built-in sets or, with --photos, on a school's own.
const ProfileCommand = "bin/edge eval --profile PROFILE.json --config CONFIG.yaml [--photos DIR with DIR/<pupil_id>/*.jpg]"

// Profiles reads the profile of the custom model c declares (embedder:
// custom); with a built-in embedder it reads nothing. The file (relative
// to models_dir or absolute, like the model's file) must be a valid
// profile of this very model (name, version and checksum prefix). A custom
// model without a profile is refused with the command that makes one:
// its vote cap, same-person limit and duplicate-guard threshold are
// measured, never assumed. Errors name <prefix>.custom.profile.
func (c EngineConfig) Profiles(prefix string) (Profiles, error) {
	if c.Embedder != CustomEmbedder || c.Custom == nil {
		return Profiles{}, nil
	}
	field, model := prefix+".custom.profile", c.Custom.ModelID()
	if c.Custom.Profile == "" {
		return Profiles{}, conf.Fieldf(field, "is required: the vote cap, same-person limit and duplicate-guard threshold of "+
			"custom model %s are measured on photos, never assumed; make the file with `%s` and set %s to it", model, ProfileCommand, field)
	}
	path := c.Custom.Profile
	if !filepath.IsAbs(path) {
		path = filepath.Join(c.ModelsDir, path)
	}
	f, err := profile.Read(path)
	if err != nil {
		return Profiles{}, conf.Fieldf(field, "%v; measure it again with `%s`", err, ProfileCommand)
	}
	if f.Model != model {
		return Profiles{}, conf.Fieldf(field, "%s is the profile of %s, not of %s (another file or version); measure this model with `%s`",
			path, f.Model, model, ProfileCommand)
	}
	p := FromFile(f)
	return Profiles{custom: &p}, nil
}
