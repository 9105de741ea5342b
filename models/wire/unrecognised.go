package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/imagecheck"
	"github.com/diemdanh/diemdanh/models/match"
)

// Kinds of an Unrecognised message.
const (
	// KindUnrecognised: a described track ended without a decision and
	// without any accepted vote.
	KindUnrecognised = "unrecognised"
	// KindNearMiss: a described track ended without a decision although a
	// vote accepted a pupil (under the threshold, with the margin); the M
	// of K rule did not corroborate it. Vote names that pupil.
	KindNearMiss = "near_miss"
)

// Limits of an Unrecognised message.
const (
	// MaxUnrecognisedCropBytes bounds face_jpeg after base64 decoding. The
	// crop is required (the hub shows it to a teacher), so it may be larger
	// than an event's optional one.
	MaxUnrecognisedCropBytes = 64 << 10
	// MaxCandidates is the most nearest pupils a message lists.
	MaxCandidates = 3
	// MinDescriptorValues is the fewest values a descriptor may have (the
	// face engine's smallest embedder output).
	MinDescriptorValues = 2
	// marginTolerance is how far a listed candidate's margin may be from
	// the gap to the next listed candidate's distance.
	marginTolerance = 1e-6
)

// Candidate is one of the nearest pupils of an unrecognised face.
type Candidate struct {
	StudentID string  `json:"student_id"` // 12-digit personal ID
	Distance  float64 `json:"distance"`   // real L2 to the pupil's nearest template, 0..10
	// Margin is the gap to the next nearest pupil: the next candidate's
	// distance minus this one's; for the last one listed, to the next pupil
	// not listed (10 when the gallery has no further pupil), 0..10.
	Margin float64 `json:"margin"`
}

// Unrecognised is a gate's report of a face it saw and did not decide: a
// track that was described (at least one usable descriptor) and ended
// without an event. It is published with QoS 1 to UnrecognisedTopic and
// goes through the gate's durable outbox like an Event. The hub keeps it
// for review (a teacher may name the pupil); it carries no decision.
type Unrecognised struct {
	Schema     int    `json:"schema"`
	CaptureID  string `json:"capture_id"` // UUIDv7, made on the edge; the hub's idempotency key
	SchoolID   string `json:"school_id"`
	GateID     string `json:"gate_id"`
	Direction  string `json:"direction"`   // "in" or "out"
	Kind       string `json:"kind"`        // KindUnrecognised or KindNearMiss
	CapturedAt int64  `json:"captured_at"` // edge clock, Unix milliseconds
	// FaceJPEG is the track's quality-best face crop (required), base64 in
	// JSON, at most MaxUnrecognisedCropBytes.
	FaceJPEG []byte        `json:"face_jpeg"`
	Quality  match.Quality `json:"quality"` // of that crop
	// Candidates are the 1..MaxCandidates nearest pupils, nearest first.
	Candidates      []Candidate   `json:"candidates"`
	FramesDescribed int           `json:"frames_described"` // usable descriptors of the track, 1..1000
	Model           match.ModelID `json:"model"`
	GalleryVer      int64         `json:"gallery_version"`
	// Vote is, for KindNearMiss only, the one accepted vote: its pupil,
	// that frame's distance and its margin to the next pupil.
	Vote *Candidate `json:"vote,omitempty"`
	// Descriptor is the descriptor of the FaceJPEG crop (the one the
	// candidates were measured from), by Model: little-endian float32
	// values, base64 in JSON like a gallery's descriptors,
	// MinDescriptorValues..match.MaxDescriptorLen finite values. Optional:
	// without it the hub can still name the pupil but cannot keep the
	// capture as a gate template.
	Descriptor []byte `json:"descriptor,omitempty"`
}

// UnrecognisedTopic is where a gate publishes Unrecognised messages (QoS 1,
// never retained).
func UnrecognisedTopic(school, gate string) string {
	return TopicRoot + "/" + school + "/gate/" + gate + "/" + TopicKindUnrecognised
}

// Validate checks every field against the contract; errors name the field.
func (u *Unrecognised) Validate() error {
	switch {
	case u.Schema != SchemaVersion:
		return conf.Fieldf("schema", "unsupported version %d (want %d)", u.Schema, SchemaVersion)
	case !validUUID(u.CaptureID):
		return conf.Fieldf("capture_id", "must be a UUID, got %q", trunc(u.CaptureID))
	case !ValidID(u.SchoolID):
		return conf.Fieldf("school_id", "invalid %q", trunc(u.SchoolID))
	case !ValidID(u.GateID):
		return conf.Fieldf("gate_id", "invalid %q", trunc(u.GateID))
	case u.Direction != DirectionIn && u.Direction != DirectionOut:
		return conf.Fieldf("direction", "must be in or out, got %q", trunc(u.Direction))
	case u.Kind != KindUnrecognised && u.Kind != KindNearMiss:
		return conf.Fieldf("kind", "must be %s or %s, got %q", KindUnrecognised, KindNearMiss, trunc(u.Kind))
	case u.CapturedAt < minCaptured:
		return conf.Fieldf("captured_at", "%d is before 2020", u.CapturedAt)
	case u.FramesDescribed < 1 || u.FramesDescribed > 1000:
		return conf.Fieldf("frames_described", "must be 1..1000, got %d", u.FramesDescribed)
	case u.Model.Name == "" || len(u.Model.Name) > 64 || len(u.Model.Version) > 32:
		return conf.Fieldf("model", "name required (at most 64 characters), version at most 32")
	case u.GalleryVer < 0:
		return conf.Fieldf("gallery_version", "must not be negative")
	}
	if err := validateCrop(u.FaceJPEG); err != nil {
		return err
	}
	if err := validateQuality(u.Quality); err != nil {
		return err
	}
	if err := validateCandidates(u.Candidates); err != nil {
		return err
	}
	if err := validateDescriptor(u.Descriptor); err != nil {
		return err
	}
	return u.validateVote()
}

// validateDescriptor checks an optional descriptor: absent, or
// MinDescriptorValues..match.MaxDescriptorLen finite little-endian float32
// values.
func validateDescriptor(b []byte) error {
	switch {
	case b == nil:
		return nil
	case len(b)%4 != 0 || len(b) < 4*MinDescriptorValues || len(b) > 4*match.MaxDescriptorLen:
		return conf.Fieldf("descriptor", "must be %d..%d float32 values (4 bytes each), got %d bytes",
			MinDescriptorValues, match.MaxDescriptorLen, len(b))
	}
	if _, err := match.DescriptorFromBytes(b); err != nil {
		return conf.Fieldf("descriptor", "%v", err)
	}
	return nil
}

// DescriptorValues returns the descriptor, or nil when the message has
// none (a gate that does not send it).
func (u *Unrecognised) DescriptorValues() (match.Descriptor, error) {
	if u.Descriptor == nil {
		return nil, nil
	}
	if err := validateDescriptor(u.Descriptor); err != nil {
		return nil, err
	}
	return match.DescriptorFromBytes(u.Descriptor)
}

func validateCrop(b []byte) error {
	switch {
	case len(b) == 0:
		return conf.Fieldf("face_jpeg", "required")
	case len(b) > MaxUnrecognisedCropBytes:
		return conf.Fieldf("face_jpeg", "%d bytes exceeds %d", len(b), MaxUnrecognisedCropBytes)
	case !bytes.HasPrefix(b, []byte{0xFF, 0xD8}):
		return conf.Fieldf("face_jpeg", "not a JPEG")
	case imagecheck.JPEGComplete(b) != nil:
		return conf.Fieldf("face_jpeg", "incomplete JPEG (truncated, no end-of-image marker)")
	}
	return nil
}

func validateQuality(q match.Quality) error {
	if q.SizePx < 0 {
		return conf.Fieldf("quality.size_px", "must not be negative")
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"quality.sharpness", q.Sharpness}, {"quality.yaw_deg", q.YawDeg}, {"quality.roll_deg", q.RollDeg},
		{"quality.brightness", q.Brightness}} {
		if !finite(f.v) {
			return conf.Fieldf(f.name, "must be finite")
		}
	}
	return nil
}

// validateCandidate checks one candidate; field prefixes its errors.
func validateCandidate(c Candidate, field string) error {
	switch {
	case !ValidPersonalID(c.StudentID):
		return conf.Fieldf(field+".student_id", "must be a 12-digit personal ID, got %q", trunc(c.StudentID))
	case !finite(c.Distance) || c.Distance < 0 || c.Distance > 10:
		return conf.Fieldf(field+".distance", "must be a finite number in 0..10")
	case !finite(c.Margin) || c.Margin < 0 || c.Margin > 10:
		return conf.Fieldf(field+".margin", "must be a finite number in 0..10")
	}
	return nil
}

// validateCandidates: 1..MaxCandidates distinct pupils, nearest first,
// each margin the gap to the next one listed.
func validateCandidates(cs []Candidate) error {
	if len(cs) < 1 || len(cs) > MaxCandidates {
		return conf.Fieldf("candidates", "must list 1..%d pupils, got %d", MaxCandidates, len(cs))
	}
	seen := map[string]bool{}
	for i, c := range cs {
		field := fmt.Sprintf("candidates[%d]", i)
		if err := validateCandidate(c, field); err != nil {
			return err
		}
		if seen[c.StudentID] {
			return conf.Fieldf(field+".student_id", "%s is listed twice", c.StudentID)
		}
		seen[c.StudentID] = true
		if i == 0 {
			continue
		}
		prev := cs[i-1]
		if c.Distance < prev.Distance {
			return conf.Fieldf(field+".distance", "candidates must be nearest first (%g after %g)", c.Distance, prev.Distance)
		}
		if math.Abs(prev.Margin-(c.Distance-prev.Distance)) > marginTolerance {
			return conf.Fieldf(fmt.Sprintf("candidates[%d].margin", i-1), "must be the gap to the next candidate (%g), got %g",
				c.Distance-prev.Distance, prev.Margin)
		}
	}
	return nil
}

func (u *Unrecognised) validateVote() error {
	switch {
	case u.Kind == KindNearMiss && u.Vote == nil:
		return conf.Fieldf("vote", "required for kind %s", KindNearMiss)
	case u.Kind != KindNearMiss && u.Vote != nil:
		return conf.Fieldf("vote", "only for kind %s", KindNearMiss)
	case u.Vote != nil:
		return validateCandidate(*u.Vote, "vote")
	}
	return nil
}

// Encode validates u and marshals it.
func (u *Unrecognised) Encode() ([]byte, error) {
	if err := u.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(u)
	if err != nil {
		return nil, fmt.Errorf("unrecognised: %w", err)
	}
	if len(b) > MaxPayloadBytes {
		return nil, conf.Fieldf("payload", "%d bytes exceeds %d", len(b), MaxPayloadBytes)
	}
	return b, nil
}

// DecodeUnrecognised parses and validates a payload (UnrecognisedTopic)
// with the strict decoder of every MQTT payload: unknown fields and
// trailing data are refused. It never panics; every failure is a
// *conf.FieldError naming what is wrong.
func DecodeUnrecognised(b []byte) (*Unrecognised, error) {
	var u Unrecognised
	if err := decodeStrict(b, &u); err != nil {
		return nil, err
	}
	if err := u.Validate(); err != nil {
		return nil, err
	}
	return &u, nil
}
