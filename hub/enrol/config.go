package enrol

import (
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
)

// Config is the enrolment section of the hub config.
type Config struct {
	Quality match.QualityPolicy `yaml:"quality"`
	// MaxPhotos per request (1–10 from the web page and the API).
	MaxPhotos int `yaml:"max_photos"`
	// Embedder is the face model of the hub's engine, of its stored
	// templates and of the galleries it serves; the gates' engine.embedder
	// must be the same. Default match.DefaultEmbedder.
	Embedder string `yaml:"embedder"`
	// Custom declares the model when Embedder is "custom"
	// (faceengine.CustomModel): the same block as the gates'
	// engine.custom, so both run the same file under the same model ID.
	Custom *faceengine.CustomModel `yaml:"custom"`
	// The three distances below are real L2 between descriptors of
	// Embedder; 0 (the default) takes the embedder's measured
	// faceengine.DistanceProfile (SameMax, DuplicateMax, FeedbackMatchMax),
	// so they follow a change of model. An explicit value overrides.
	//
	// ConsistencyMax: a new photo farther than this from every one of the
	// pupil's other templates is refused as "not the same person". The
	// profile puts it at the top of the genuine distribution (many
	// impostor pairs are nearer): this check only catches a clearly
	// different face; see hub/README.md, Enrolment.
	ConsistencyMax float64 `yaml:"consistency_max"`
	// DuplicateMax: a new template closer than this to another pupil's
	// template is held for review (the profile: the impostor
	// distribution's low tail). See hub/README.md, Enrolment, for the trade-off.
	DuplicateMax float64 `yaml:"duplicate_max"`
	// FeedbackMatchMax: on "not this pupil", the pupil's template nearest
	// to the event's face crop is excluded when within this distance.
	FeedbackMatchMax float64 `yaml:"feedback_match_max"`
	// DetectSide: photos are decoded (JPEG at a reduced DCT scale when
	// possible) and downscaled so the longer side is at most this before
	// detection; enrolment photos have large faces and this is most of the
	// cost. Face sizes are then in these pixels.
	DetectSide int `yaml:"detect_side"`
	// ReembedOnUpgrade: when the hub starts with templates of an earlier
	// version of the same embedder (a model upgrade, e.g. sface-2021dec-bq
	// flip.2 → yunet5.flip.3), rebuild them from the kept photos at once
	// (facetemplates.Store.Reembed, audited as the system), so the gates'
	// galleries do not lose those pupils. With embedder: custom, templates
	// of any other model are rebuilt the same way (a switch to the
	// school's own model). Default on.
	ReembedOnUpgrade bool `yaml:"reembed_on_upgrade"`
	// RetryNoFaceSide: when no face is found, try again with the image
	// downscaled to this side (HOG misses some large faces); 0 = off.
	RetryNoFaceSide int `yaml:"retry_no_face_side"`
	// Candidates are the models an admin may try on a school's kept
	// photos and switch the hub to (the operating-point page; models.go):
	// built-in embedders, or embedder: custom with a custom block.
	// enrol.embedder is always one of them.
	Candidates []Candidate `yaml:"candidates"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Quality: match.DefaultQualityPolicy(), MaxPhotos: 10, Embedder: match.DefaultEmbedder.Name,
		DetectSide: 1024, RetryNoFaceSide: 700, ReembedOnUpgrade: true}
}

// ForModel returns c with every distance left at 0 taken from model's
// distance profile (faceengine.Profiles: a custom model's from the file
// enrol.custom.profile names); it fails, naming the field, when one is 0
// and nobody measured model, and refuses a custom model without a
// profile, naming enrol.custom.profile.
func (c Config) ForModel(prefix string, model match.ModelID) (Config, error) {
	profiles, err := c.EngineConfig().Profiles(prefix)
	if err != nil {
		return c, err
	}
	p, ok := profiles.Of(model)
	for _, f := range []struct {
		v    *float64
		name string
		def  float64
	}{{&c.ConsistencyMax, "consistency_max", p.SameMax}, {&c.DuplicateMax, "duplicate_max", p.DuplicateMax},
		{&c.FeedbackMatchMax, "feedback_match_max", p.FeedbackMatchMax}} {
		if *f.v != 0 {
			continue
		}
		if !ok {
			return c, conf.Fieldf(prefix+"."+f.name, "is 0 (from the embedder's profile) but %s has no measured profile: set it", model)
		}
		*f.v = f.def
	}
	return c, nil
}

// Validate names the first bad field under prefix.
func (c Config) Validate(prefix string) error {
	if err := c.Quality.Validate(prefix + ".quality"); err != nil {
		return err
	}
	switch {
	case c.MaxPhotos < 1 || c.MaxPhotos > 32:
		return conf.Fieldf(prefix+".max_photos", "must be 1..32, got %d", c.MaxPhotos)
	case !(c.ConsistencyMax >= 0 && c.ConsistencyMax <= 2):
		return conf.Fieldf(prefix+".consistency_max", "must be in (0, 2], or 0 for the embedder's profile")
	case !(c.DuplicateMax >= 0 && c.DuplicateMax <= 2):
		return conf.Fieldf(prefix+".duplicate_max", "must be in [0, 2] (0: the embedder's profile)")
	case !(c.FeedbackMatchMax >= 0 && c.FeedbackMatchMax <= 2):
		return conf.Fieldf(prefix+".feedback_match_max", "must be in [0, 2] (0: the embedder's profile)")
	case c.DetectSide < 320 || c.DetectSide > 8000:
		return conf.Fieldf(prefix+".detect_side", "must be 320..8000")
	case c.RetryNoFaceSide < 0 || c.RetryNoFaceSide > 8000:
		return conf.Fieldf(prefix+".retry_no_face_side", "must be 0..8000")
	}
	ec := c.EngineConfig()
	if err := ec.Validate(prefix); err != nil {
		return err
	}
	m, ok := ec.Model()
	if !ok {
		return conf.Fieldf(prefix+".embedder", "unknown embedder %q (one of %v)", c.Embedder, faceengine.EmbedderNames())
	}
	if _, err := c.ForModel(prefix, m); err != nil {
		return err
	}
	return c.validateCandidates(prefix)
}

// EngineConfig is the hub's face engine for c: the default limits,
// models from $MODELS_DIR (or models/), c.Embedder and c.Custom; its
// refusals name the enrol section's keys.
func (c Config) EngineConfig() faceengine.EngineConfig {
	e := EngineConfig()
	if c.Embedder != "" {
		e.Embedder = c.Embedder
	}
	e.Custom, e.Key = c.Custom, "enrol"
	return e
}
