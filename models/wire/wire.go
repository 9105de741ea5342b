package wire

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/imagecheck"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/google/uuid"
)

// SchemaVersion is the version of the gate→hub event contract. A hub
// accepts exactly the versions it knows; see models/wire/PROTOCOL.md.
const SchemaVersion = 1

// Limits of the wire contract.
const (
	MaxPayloadBytes = 256 << 10 // whole MQTT payload
	MaxCropBytes    = 24 << 10  // face_jpeg after base64 decoding (target ~20 KB)
	TopicRoot       = "diemdanh/v1"
)

// Direction of a gate camera.
const (
	DirectionIn  = "in"
	DirectionOut = "out"
)

// UnknownStudent is the student_id of an event that reports an unknown face.
const UnknownStudent = "unknown"

// Event is one attendance decision made at a gate: a pupil (or an unknown
// face) seen passing in a direction. It is the JSON payload published to
// EventTopic with QoS 1.
type Event struct {
	Schema     int           `json:"schema"`
	EventID    string        `json:"event_id"` // UUIDv7, made on the edge; the hub's idempotency key
	SchoolID   string        `json:"school_id"`
	GateID     string        `json:"gate_id"`
	Direction  string        `json:"direction"`   // "in" or "out"
	StudentID  string        `json:"student_id"`  // 12-digit personal ID, or "unknown"
	CapturedAt int64         `json:"captured_at"` // edge clock, Unix milliseconds
	Distance   float64       `json:"distance"`    // real L2 to the matched identity
	Margin     float64       `json:"margin"`      // distance gap to the second-best identity
	FramesUsed int           `json:"frames_used"` // descriptors that voted
	Quality    match.Quality `json:"quality"`     // of the best crop
	Model      match.ModelID `json:"model"`
	GalleryVer int64         `json:"gallery_version"`
	FaceJPEG   []byte        `json:"face_jpeg,omitempty"` // small face crop, base64 in JSON
	// Template is present when the decision was well inside the operating
	// point: the best crop (the one of quality and face_jpeg) may then
	// become an automatic gate template on the hub. Only for a pupil.
	Template *EventTemplate `json:"template,omitempty"`
}

// EventTemplate is an event's offer of its best crop as an automatic gate
// template, with the evidence that the decision was well inside the
// operating point. The crop's quality is the event's quality.
type EventTemplate struct {
	// Descriptor is the best crop's descriptor, by the event's model:
	// little-endian float32 values, base64 in JSON like a gallery's
	// descriptors, MinDescriptorValues..match.MaxDescriptorLen finite
	// values.
	Descriptor []byte `json:"descriptor"`
	// DistanceMargin is the threshold in force minus the crop's distance
	// to the pupil (0..10).
	DistanceMargin float64 `json:"distance_margin"`
	// SecondMargin is how much nearer the crop is to the pupil than to
	// the second-best pupil of the whole gallery (0..10).
	SecondMargin float64 `json:"second_margin"`
	// Agreeing of the track's Votes described crops named the pupil as
	// their nearest (1 ≤ agreeing ≤ votes ≤ 1000).
	Agreeing int `json:"agreeing"`
	Votes    int `json:"votes"`
}

// Validate checks the template; errors name the field under "template.".
func (t *EventTemplate) Validate() error {
	if t.Descriptor == nil {
		return conf.Fieldf("template.descriptor", "required")
	}
	if err := validateDescriptor(t.Descriptor); err != nil {
		var fe *conf.FieldError
		if errors.As(err, &fe) {
			return conf.Fieldf("template."+fe.Field, "%s", fe.Reason)
		}
		return conf.Fieldf("template.descriptor", "%v", err)
	}
	switch {
	case !finite(t.DistanceMargin) || t.DistanceMargin < 0 || t.DistanceMargin > 10:
		return conf.Fieldf("template.distance_margin", "must be a finite number in 0..10")
	case !finite(t.SecondMargin) || t.SecondMargin < 0 || t.SecondMargin > 10:
		return conf.Fieldf("template.second_margin", "must be a finite number in 0..10")
	case t.Votes < 1 || t.Votes > 1000:
		return conf.Fieldf("template.votes", "must be 1..1000, got %d", t.Votes)
	case t.Agreeing < 1 || t.Agreeing > t.Votes:
		return conf.Fieldf("template.agreeing", "must be 1..votes (%d), got %d", t.Votes, t.Agreeing)
	}
	return nil
}

// DescriptorValues returns the template's descriptor.
func (t *EventTemplate) DescriptorValues() (match.Descriptor, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	return match.DescriptorFromBytes(t.Descriptor)
}

// NewEventID returns a UUIDv7: time-ordered, unique without coordination.
func NewEventID() string { return uuid.Must(uuid.NewV7()).String() }

var (
	idRe        = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)
	personIDRe  = regexp.MustCompile(`^[0-9]{12}$`)
	minCaptured = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
)

// ValidID reports whether s is a valid school or gate ID (lowercase letters,
// digits, '-' and '_', at most 64, usable as an MQTT topic level).
func ValidID(s string) bool { return idRe.MatchString(s) }

// ValidPersonalID reports whether s is a 12-digit Vietnamese personal ID
// (mã định danh cá nhân).
func ValidPersonalID(s string) bool { return personIDRe.MatchString(s) }

// Validate checks every field against the contract; errors name the field.
func (e *Event) Validate() error {
	switch {
	case e.Schema != SchemaVersion:
		return conf.Fieldf("schema", "unsupported version %d (want %d)", e.Schema, SchemaVersion)
	case !validUUID(e.EventID):
		return conf.Fieldf("event_id", "must be a UUID, got %q", trunc(e.EventID))
	case !ValidID(e.SchoolID):
		return conf.Fieldf("school_id", "invalid %q", trunc(e.SchoolID))
	case !ValidID(e.GateID):
		return conf.Fieldf("gate_id", "invalid %q", trunc(e.GateID))
	case e.Direction != DirectionIn && e.Direction != DirectionOut:
		return conf.Fieldf("direction", "must be in or out, got %q", trunc(e.Direction))
	case e.StudentID != UnknownStudent && !ValidPersonalID(e.StudentID):
		return conf.Fieldf("student_id", "must be a 12-digit personal ID or %q, got %q", UnknownStudent, trunc(e.StudentID))
	case e.CapturedAt < minCaptured:
		return conf.Fieldf("captured_at", "%d is before 2020", e.CapturedAt)
	case !finite(e.Distance) || e.Distance < 0 || e.Distance > 10:
		return conf.Fieldf("distance", "must be a finite number in 0..10")
	case !finite(e.Margin) || e.Margin < 0 || e.Margin > 10:
		return conf.Fieldf("margin", "must be a finite number in 0..10")
	case e.FramesUsed < 0 || e.FramesUsed > 1000:
		return conf.Fieldf("frames_used", "must be 0..1000")
	case e.Model.Name == "" || len(e.Model.Name) > 64 || len(e.Model.Version) > 32:
		return conf.Fieldf("model", "name required (at most 64 characters), version at most 32")
	case len(e.FaceJPEG) > MaxCropBytes:
		return conf.Fieldf("face_jpeg", "%d bytes exceeds %d", len(e.FaceJPEG), MaxCropBytes)
	case len(e.FaceJPEG) > 0 && !bytes.HasPrefix(e.FaceJPEG, []byte{0xFF, 0xD8}):
		return conf.Fieldf("face_jpeg", "not a JPEG")
	case len(e.FaceJPEG) > 0 && imagecheck.JPEGComplete(e.FaceJPEG) != nil:
		return conf.Fieldf("face_jpeg", "incomplete JPEG (truncated, no end-of-image marker)")
	}
	if e.Template != nil {
		if e.StudentID == UnknownStudent {
			return conf.Fieldf("template", "only an event naming a pupil may offer a template")
		}
		if err := e.Template.Validate(); err != nil {
			return err
		}
	}
	for name, v := range map[string]float64{"quality.sharpness": e.Quality.Sharpness, "quality.yaw_deg": e.Quality.YawDeg,
		"quality.roll_deg": e.Quality.RollDeg, "quality.brightness": e.Quality.Brightness} {
		if !finite(v) {
			return conf.Fieldf(name, "must be finite")
		}
	}
	return nil
}

// Encode validates e and marshals it.
func (e *Event) Encode() ([]byte, error) {
	if err := e.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("event: %w", err)
	}
	if len(b) > MaxPayloadBytes {
		return nil, conf.Fieldf("payload", "%d bytes exceeds %d", len(b), MaxPayloadBytes)
	}
	return b, nil
}

// DecodeEvent parses and validates a payload. It never panics; every
// failure is a *FieldError (or wraps one) naming what is wrong, so the hub
// can quarantine the payload with a reason.
func DecodeEvent(b []byte) (*Event, error) {
	var e Event
	if err := decodeStrict(b, &e); err != nil {
		return nil, err
	}
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return &e, nil
}

// Topics. Every level is validated by ValidID before use.

// The last level of a gate topic: the kinds ParseGateTopic knows.
const (
	TopicKindEvents       = "events"
	TopicKindStatus       = "status"
	TopicKindHeartbeat    = "heartbeat"
	TopicKindUnrecognised = "unrecognised"
)

// EventTopic is where gate publishes attendance events (QoS 1).
func EventTopic(school, gate string) string {
	return TopicRoot + "/" + school + "/gate/" + gate + "/" + TopicKindEvents
}

// StatusTopic holds the gate's retained online/offline status (also its last will).
func StatusTopic(school, gate string) string {
	return TopicRoot + "/" + school + "/gate/" + gate + "/" + TopicKindStatus
}

// HeartbeatTopic carries the gate's periodic metrics.
func HeartbeatTopic(school, gate string) string {
	return TopicRoot + "/" + school + "/gate/" + gate + "/" + TopicKindHeartbeat
}

// GalleryTopic holds the school's retained gallery announcement.
func GalleryTopic(school string) string { return TopicRoot + "/" + school + "/gallery" }

// ParseGateTopic splits a gate topic into school, gate and kind (one of
// the TopicKind constants: "events", "status", "heartbeat",
// "unrecognised"); any other topic, including an unknown kind, is not a
// gate topic.
func ParseGateTopic(topic string) (school, gate, kind string, ok bool) {
	rest, found := strings.CutPrefix(topic, TopicRoot+"/")
	if !found {
		return "", "", "", false
	}
	p := strings.Split(rest, "/")
	if len(p) != 4 || p[1] != "gate" || !ValidID(p[0]) || !ValidID(p[2]) {
		return "", "", "", false
	}
	switch p[3] {
	case TopicKindEvents, TopicKindStatus, TopicKindHeartbeat, TopicKindUnrecognised:
		return p[0], p[2], p[3], true
	}
	return "", "", "", false
}

// Status is the retained gate status payload; the same JSON with Online
// false is registered as the MQTT last will.
type Status struct {
	Schema int    `json:"schema"`
	GateID string `json:"gate_id"`
	Online bool   `json:"online"`
	At     int64  `json:"at"` // Unix ms
}

// Heartbeat is the gate's periodic metrics payload.
type Heartbeat struct {
	Schema       int     `json:"schema"`
	GateID       string  `json:"gate_id"`
	At           int64   `json:"at"` // edge clock, Unix ms
	FPS          float64 `json:"fps"`
	Dropped      int64   `json:"dropped_frames"`
	OutboxDepth  int     `json:"outbox_depth"`
	GalleryVer   int64   `json:"gallery_version"`
	Unknowns     int64   `json:"unknown_tracks"`
	UptimeS      int64   `json:"uptime_s"`
	CameraOnline bool    `json:"camera_online"`
	// Candidate restriction (edge pipeline.candidates): the session window
	// in force ("" outside every window or when off) and how many pupils a
	// probe is compared against.
	CandidateWindow string `json:"candidate_window,omitempty"`
	Candidates      int    `json:"candidates,omitempty"`
	// DiskFull: the gate's outbox refuses new events because its disk is
	// full (events already stored are kept and sent). OutboxRefused counts
	// the messages it refused since it started (full disk or full outbox).
	DiskFull      bool  `json:"disk_full,omitempty"`
	OutboxRefused int64 `json:"outbox_refused,omitempty"`
}

// GalleryAnnounce is the retained message telling gates a new gallery exists.
type GalleryAnnounce struct {
	Schema  int           `json:"schema"`
	Version int64         `json:"version"`
	URL     string        `json:"url"` // path on the hub, e.g. /api/v1/gates/gallery
	Model   match.ModelID `json:"model"`
}

// decodeStrict parses b, one JSON object of at most MaxPayloadBytes, into
// v: unknown fields and data after the object are errors. Every MQTT
// payload is decoded through it, then validated.
func decodeStrict(b []byte, v any) error {
	return decodeStrictDoc(b, v, "payload", MaxPayloadBytes)
}

// decodeStrictDoc is decodeStrict for a document of at most max bytes
// whose errors name field (the gallery file uses it with MaxGalleryBytes).
func decodeStrictDoc(b []byte, v any, field string, max int) error {
	if len(b) > max {
		return conf.Fieldf(field, "%d bytes exceeds %d", len(b), max)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return conf.Fieldf(field, "malformed JSON: %v", err)
	}
	if dec.More() {
		return conf.Fieldf(field, "trailing data after the JSON object")
	}
	return nil
}

func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	_, err := uuid.Parse(s)
	return err == nil
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// trunc bounds a value quoted in a validation error to 40 bytes and an
// ellipsis.
func trunc(s string) string { return conf.Truncate(s, 40, conf.Bytes, "…") }

// b64 is kept for callers that want the crop as text.
var b64 = base64.StdEncoding
