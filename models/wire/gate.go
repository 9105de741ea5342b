package wire

import (
	"strings"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/match"
)

// MaxAnnounceURL bounds GalleryAnnounce.URL.
const MaxAnnounceURL = 256

// Validate checks a status payload against the contract; errors name the
// field. At is 0 in the last will (registered before the gate is online).
func (s *Status) Validate() error {
	switch {
	case s.Schema != SchemaVersion:
		return conf.Fieldf("schema", "unsupported version %d (want %d)", s.Schema, SchemaVersion)
	case !ValidID(s.GateID):
		return conf.Fieldf("gate_id", "invalid %q", trunc(s.GateID))
	case s.At < 0:
		return conf.Fieldf("at", "must not be negative")
	}
	return nil
}

// DecodeStatus parses and validates a status payload (StatusTopic). Like
// DecodeEvent it never panics and every failure is a *conf.FieldError.
func DecodeStatus(b []byte) (*Status, error) {
	var s Status
	if err := decodeStrict(b, &s); err != nil {
		return nil, err
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// Validate checks a heartbeat payload against the contract; errors name
// the field.
func (h *Heartbeat) Validate() error {
	switch {
	case h.Schema != SchemaVersion:
		return conf.Fieldf("schema", "unsupported version %d (want %d)", h.Schema, SchemaVersion)
	case !ValidID(h.GateID):
		return conf.Fieldf("gate_id", "invalid %q", trunc(h.GateID))
	case h.At < 0:
		return conf.Fieldf("at", "must not be negative")
	case !finite(h.FPS) || h.FPS < 0:
		return conf.Fieldf("fps", "must be a finite number ≥ 0")
	case h.Dropped < 0:
		return conf.Fieldf("dropped_frames", "must not be negative")
	case h.OutboxDepth < 0:
		return conf.Fieldf("outbox_depth", "must not be negative")
	case h.GalleryVer < 0:
		return conf.Fieldf("gallery_version", "must not be negative")
	case h.Unknowns < 0:
		return conf.Fieldf("unknown_tracks", "must not be negative")
	case h.UptimeS < 0:
		return conf.Fieldf("uptime_s", "must not be negative")
	case h.CandidateWindow != "" && !match.ValidSession(h.CandidateWindow):
		return conf.Fieldf("candidate_window", "unknown session %q (want one of %v)", trunc(h.CandidateWindow), match.Sessions)
	case h.Candidates < 0:
		return conf.Fieldf("candidates", "must not be negative")
	case h.OutboxRefused < 0:
		return conf.Fieldf("outbox_refused", "must not be negative")
	}
	return nil
}

// DecodeHeartbeat parses and validates a heartbeat payload (HeartbeatTopic).
func DecodeHeartbeat(b []byte) (*Heartbeat, error) {
	var h Heartbeat
	if err := decodeStrict(b, &h); err != nil {
		return nil, err
	}
	if err := h.Validate(); err != nil {
		return nil, err
	}
	return &h, nil
}

// Validate checks a gallery announcement against the contract; errors
// name the field. URL, when given, is a path on the hub; URL and model may
// be left out: a gate acts on the version alone (it fetches from its
// configured hub URL and checks the model of the document it gets).
func (a *GalleryAnnounce) Validate() error {
	switch {
	case a.Schema != SchemaVersion:
		return conf.Fieldf("schema", "unsupported version %d (want %d)", a.Schema, SchemaVersion)
	case a.Version < 0:
		return conf.Fieldf("version", "must not be negative")
	case a.URL != "" && (!strings.HasPrefix(a.URL, "/") || len(a.URL) > MaxAnnounceURL):
		return conf.Fieldf("url", "must be a path on the hub of at most %d bytes, got %q", MaxAnnounceURL, trunc(a.URL))
	case len(a.Model.Name) > 64 || len(a.Model.Version) > 32:
		return conf.Fieldf("model", "name at most 64 characters, version at most 32")
	}
	return nil
}

// DecodeGalleryAnnounce parses and validates a gallery announcement
// (GalleryTopic).
func DecodeGalleryAnnounce(b []byte) (*GalleryAnnounce, error) {
	var a GalleryAnnounce
	if err := decodeStrict(b, &a); err != nil {
		return nil, err
	}
	if err := a.Validate(); err != nil {
		return nil, err
	}
	return &a, nil
}
