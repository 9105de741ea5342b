// Package profile is the distance profile file of a face model, in pure
// Go: what the model's real L2 distances mean, measured by `edge eval
// --profile` on labelled photos, and the four distances the gate and the
// hub derive from it (the vote cap, the same-person limit, the
// duplicate-guard threshold and the feedback match limit). A custom model
// (engine.custom / enrol.custom) names its file in the block's profile key;
// the built-in models keep their constants (faceengine.DistanceProfiles),
// which follow the same rule (Rule).
package profile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"time"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/match"
)

// Version is the file format's version.
const Version = 1

// DateLayout is the layout of File.Measured.
const DateLayout = "2006-01-02"

// MinGenuinePairs and MinImpostorPairs are the fewest pairs a rule set
// needs: p99 and p01 are distinct order statistics only from 100 pairs on,
// and a genuine p99 of fewer than 20 pairs is the largest pair.
const (
	MinGenuinePairs  = 20
	MinImpostorPairs = 100
)

// File is a model's distance profile.
type File struct {
	// Version is the format's version (Version).
	Version int `json:"version"`
	// Model is the model measured: its descriptors are the ones the
	// distances below are between.
	Model match.ModelID `json:"model"`
	// Measured is the day of the measurement (DateLayout).
	Measured string `json:"measured"`
	// Rule says how the four distances follow from the sets (Rule).
	Rule string `json:"rule"`
	// Sets are the photo sets measured; the ones with Rule true give the
	// distances.
	Sets []Set `json:"sets"`
	// GenuinePairs and ImpostorPairs count every set's pairs together
	// (pairs are only taken within a set); EER and At are over them.
	GenuinePairs  int `json:"genuine_pairs"`
	ImpostorPairs int `json:"impostor_pairs"`
	// SameMax: a new enrolment photo farther than this from every one of
	// the pupil's templates is "not the same person".
	SameMax float64 `json:"same_max"`
	// DuplicateMax: a new template closer than this to another pupil's is
	// held for review (the duplicate guard).
	DuplicateMax float64 `json:"duplicate_max"`
	// FeedbackMatchMax: on "not this pupil", the pupil's template within
	// this distance of the event's crop is excluded.
	FeedbackMatchMax float64 `json:"feedback_match_max"`
	// VoteCap is the loosest threshold a gate ever accepts.
	VoteCap float64 `json:"vote_cap"`
	// EER is the equal error rate over all pairs, at EERThreshold.
	EER          float64 `json:"eer"`
	EERThreshold float64 `json:"eer_threshold"`
	// At gives FAR and FRR over all pairs at each of the four distances.
	At []Point `json:"at"`
}

// Set is one photo set's measurement.
type Set struct {
	// Name is the set's name: a built-in set (faces, kpop, casia-facev5,
	// scut-fbp5500) or the school's folder.
	Name string `json:"name"`
	// Rule: the set's quantiles give the distances (Rule).
	Rule bool `json:"rule"`
	// Images read, identities among the usable ones, images in which no
	// face was found (failure to enrol), exact duplicates left out.
	Images         int     `json:"images"`
	Identities     int     `json:"identities"`
	FailureToEnrol int     `json:"failure_to_enrol"`
	DuplicatesLeft int     `json:"duplicates_left_out"`
	GenuinePairs   int     `json:"genuine_pairs"`
	ImpostorPairs  int     `json:"impostor_pairs"`
	GenuineMedian  float64 `json:"genuine_median"`
	GenuineP99     float64 `json:"genuine_p99"`
	ImpostorP01    float64 `json:"impostor_p01"`
	ImpostorMedian float64 `json:"impostor_median"`
}

// Point is the error rates over all pairs at one of the four distances.
type Point struct {
	// Field is the distance's JSON key: same_max, duplicate_max,
	// feedback_match_max or vote_cap.
	Field     string  `json:"field"`
	Threshold float64 `json:"threshold"`
	// FAR: the fraction of impostor pairs at or under Threshold; FRR: of
	// genuine pairs over it.
	FAR float64 `json:"far"`
	FRR float64 `json:"frr"`
}

// Fields are the four distances' keys, in the order At lists them.
var Fields = [4]string{"same_max", "duplicate_max", "feedback_match_max", "vote_cap"}

// Value returns the distance of a key in Fields.
func (f File) Value(field string) float64 {
	switch field {
	case "same_max":
		return f.SameMax
	case "duplicate_max":
		return f.DuplicateMax
	case "feedback_match_max":
		return f.FeedbackMatchMax
	case "vote_cap":
		return f.VoteCap
	}
	return math.NaN()
}

// Decode reads one profile strictly (unknown keys and trailing data are
// errors) and validates it.
func Decode(r io.Reader) (File, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var f File
	if err := dec.Decode(&f); err != nil {
		return File{}, fmt.Errorf("profile: %w", err)
	}
	if dec.More() {
		return File{}, fmt.Errorf("profile: data after the profile object")
	}
	if err := f.Validate(); err != nil {
		return File{}, err
	}
	return f, nil
}

// Read decodes the profile file at path.
func Read(path string) (File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return File{}, fmt.Errorf("profile: %w", err)
	}
	f, err := Decode(bytes.NewReader(b))
	if err != nil {
		return File{}, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// Encode validates f and returns it as indented JSON.
func (f File) Encode() ([]byte, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("profile: %w", err)
	}
	return append(b, '\n'), nil
}

// Write validates f and writes it to path atomically.
func (f File) Write(path string) error {
	b, err := f.Encode()
	if err != nil {
		return err
	}
	return conf.WriteFileAtomic(path, b, 0o644)
}

// Validate names the first bad field: the format's version, the model,
// the date, every set's counts and quantiles, the four distances (each in
// (0, 2] and each the Rule's value from the rule sets) and the error rates
// at each of them.
func (f File) Validate() error {
	switch {
	case f.Version != Version:
		return conf.Fieldf("version", "must be %d, got %d", Version, f.Version)
	case f.Model.Name == "" || len(f.Model.Name) > 64:
		return conf.Fieldf("model.name", "must be 1..64 characters, got %q", f.Model.Name)
	case f.Model.Version == "" || len(f.Model.Version) > 32:
		return conf.Fieldf("model.version", "must be 1..32 characters, got %q", f.Model.Version)
	case f.Rule != RuleText:
		return conf.Fieldf("rule", "must be %q", RuleText)
	}
	if _, err := time.Parse(DateLayout, f.Measured); err != nil {
		return conf.Fieldf("measured", "must be a date like 2026-12-06, got %q", f.Measured)
	}
	if err := f.validateSets(); err != nil {
		return err
	}
	if err := f.validateDistances(); err != nil {
		return err
	}
	return f.validateRates()
}

func (f File) validateSets() error {
	if len(f.Sets) == 0 {
		return conf.Fieldf("sets", "must list the sets measured")
	}
	var gen, imp int
	for i, s := range f.Sets {
		if err := s.validate(fmt.Sprintf("sets[%d]", i)); err != nil {
			return err
		}
		gen, imp = gen+s.GenuinePairs, imp+s.ImpostorPairs
	}
	switch {
	case f.GenuinePairs != gen:
		return conf.Fieldf("genuine_pairs", "must be the sets' sum %d, got %d", gen, f.GenuinePairs)
	case f.ImpostorPairs != imp:
		return conf.Fieldf("impostor_pairs", "must be the sets' sum %d, got %d", imp, f.ImpostorPairs)
	}
	return nil
}

func (s Set) validate(field string) error {
	quantiles := []struct {
		name string
		v    float64
	}{{"genuine_median", s.GenuineMedian}, {"genuine_p99", s.GenuineP99}, {"impostor_p01", s.ImpostorP01}, {"impostor_median", s.ImpostorMedian}}
	switch {
	case s.Name == "" || len(s.Name) > 200:
		return conf.Fieldf(field+".name", "must be 1..200 characters, got %q", s.Name)
	case s.Images < 1 || s.FailureToEnrol < 0 || s.FailureToEnrol+s.DuplicatesLeft > s.Images || s.DuplicatesLeft < 0:
		return conf.Fieldf(field+".images", "%d images with %d failures to enrol and %d duplicates do not add up", s.Images, s.FailureToEnrol, s.DuplicatesLeft)
	case s.Identities < 1:
		return conf.Fieldf(field+".identities", "must be at least 1, got %d", s.Identities)
	case s.GenuinePairs < 0 || s.ImpostorPairs < 0 || s.GenuinePairs+s.ImpostorPairs == 0:
		return conf.Fieldf(field+".genuine_pairs", "the set has no pairs (genuine %d, impostor %d)", s.GenuinePairs, s.ImpostorPairs)
	case s.Rule && s.GenuinePairs < MinGenuinePairs:
		return conf.Fieldf(field+".genuine_pairs", "a rule set needs at least %d genuine pairs, got %d", MinGenuinePairs, s.GenuinePairs)
	case s.Rule && s.ImpostorPairs < MinImpostorPairs:
		return conf.Fieldf(field+".impostor_pairs", "a rule set needs at least %d impostor pairs, got %d", MinImpostorPairs, s.ImpostorPairs)
	}
	for _, q := range quantiles {
		if math.IsNaN(q.v) || q.v < 0 || q.v > 2 {
			return conf.Fieldf(field+"."+q.name, "must be a distance in [0, 2], got %v", q.v)
		}
	}
	return nil
}

func (f File) validateDistances() error {
	sameMax, voteCap, err := Rule(f.Sets)
	if err != nil {
		return err
	}
	want := map[string]float64{"same_max": sameMax, "duplicate_max": voteCap, "feedback_match_max": sameMax, "vote_cap": voteCap}
	for _, k := range Fields {
		v := f.Value(k)
		if !(v > 0 && v <= 2) {
			return conf.Fieldf(k, "must be a distance in (0, 2], got %v", v)
		}
		if math.Abs(v-want[k]) > 1e-9 {
			return conf.Fieldf(k, "is %v but the rule gives %v from the rule sets", v, want[k])
		}
	}
	return nil
}

func (f File) validateRates() error {
	switch {
	case !(f.EER >= 0 && f.EER <= 1):
		return conf.Fieldf("eer", "must be a rate in [0, 1], got %v", f.EER)
	case !(f.EERThreshold >= 0 && f.EERThreshold <= 2):
		return conf.Fieldf("eer_threshold", "must be a distance in [0, 2], got %v", f.EERThreshold)
	case len(f.At) != len(Fields):
		return conf.Fieldf("at", "must give FAR and FRR at each of %v, got %d points", Fields, len(f.At))
	}
	for i, p := range f.At {
		field := fmt.Sprintf("at[%d]", i)
		switch {
		case p.Field != Fields[i]:
			return conf.Fieldf(field+".field", "must be %q, got %q", Fields[i], p.Field)
		case p.Threshold != f.Value(p.Field):
			return conf.Fieldf(field+".threshold", "must be %s's %v, got %v", p.Field, f.Value(p.Field), p.Threshold)
		case !(p.FAR >= 0 && p.FAR <= 1):
			return conf.Fieldf(field+".far", "must be a rate in [0, 1], got %v", p.FAR)
		case !(p.FRR >= 0 && p.FRR <= 1):
			return conf.Fieldf(field+".frr", "must be a rate in [0, 1], got %v", p.FRR)
		}
	}
	return nil
}
