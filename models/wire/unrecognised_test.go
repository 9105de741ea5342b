package wire

import (
	"bytes"
	"errors"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/match"
)

// goldenUnrecognised are the documented example Unrecognised payloads
// (models/wire/PROTOCOL.md).
func goldenUnrecognised() map[string]*Unrecognised {
	base := func() *Unrecognised {
		return &Unrecognised{Schema: SchemaVersion, CaptureID: "01920e4c-1a2b-7c3d-8e4f-5a6b7c8d9e0f",
			SchoolID: "thcs-nguyen-du", GateID: "gate-1", Direction: DirectionIn, Kind: KindUnrecognised,
			CapturedAt: 1788400512345, FaceJPEG: tinyJPEG(),
			Quality: match.Quality{SizePx: 131, Sharpness: 188.25, YawDeg: 9.5, RollDeg: -2.25, Brightness: 104.5},
			Candidates: []Candidate{
				{StudentID: "079212003456", Distance: 0.5, Margin: 0.0625},
				{StudentID: "001308009911", Distance: 0.5625, Margin: 0.125},
				{StudentID: "079212007777", Distance: 0.6875, Margin: 0.015625},
			},
			FramesDescribed: 4, Model: match.ModelID{Name: "sface-2021dec-bq", Version: "2021dec-bq.yunet5.flip.3"},
			GalleryVer: 42}
	}
	un := base()
	near := base()
	near.CaptureID, near.Kind = "01920e4c-3c4d-7e5f-9a0b-1c2d3e4f5a6b", KindNearMiss
	near.Vote = &Candidate{StudentID: "079212003456", Distance: 0.40625, Margin: 0.09375}
	one := base()
	one.CaptureID, one.Direction, one.FramesDescribed = "01920e4c-5e6f-7a0b-8c1d-2e3f4a5b6c7d", DirectionOut, 1
	one.Candidates = []Candidate{{StudentID: "079212003456", Distance: 0.75, Margin: 10}}
	desc := base()
	desc.CaptureID, desc.Descriptor = "01920e4c-7a8b-7c9d-8e0f-1a2b3c4d5e6f", goldenDescriptor().Bytes()
	return map[string]*Unrecognised{"unrecognised.json": un, "near_miss.json": near, "one_candidate.json": one,
		"with_descriptor.json": desc}
}

// goldenDescriptor is a 128-value descriptor whose values are exact in
// float32 and in JSON.
func goldenDescriptor() match.Descriptor {
	d := make(match.Descriptor, match.DescriptorLen)
	for i := range d {
		d[i] = float32(i-64) / 256
	}
	return d
}

// descriptorBytes is goldenDescriptor's encoding with value i set to v.
func descriptorBytes(i int, v float32) []byte {
	d := goldenDescriptor()
	d[i] = v
	return d.Bytes()
}

// TestGoldenUnrecognised: each valid example decodes to its value and
// re-encodes to itself; each invalid one is refused on the field named in
// its expect.json.
func TestGoldenUnrecognised(t *testing.T) {
	dir := filepath.Join("testdata", "unrecognised")
	checkGolden(t, filepath.Join(dir, "valid"), goldenUnrecognised(), DecodeUnrecognised)
	checkInvalid(t, filepath.Join(dir, "invalid"), DecodeUnrecognised)
	for name, u := range goldenUnrecognised() {
		if _, err := u.Encode(); err != nil {
			t.Errorf("%s: Encode: %v", name, err)
		}
	}
}

func TestUnrecognisedValidateTable(t *testing.T) {
	cases := []struct {
		name, field string
		mod         func(*Unrecognised)
	}{
		{"valid", "", func(*Unrecognised) {}},
		{"out", "", func(u *Unrecognised) { u.Direction = DirectionOut }},
		{"equal distances", "", func(u *Unrecognised) {
			u.Candidates[0].Margin, u.Candidates[1].Distance = 0, u.Candidates[0].Distance
			u.Candidates[1].Margin = u.Candidates[2].Distance - u.Candidates[1].Distance
		}},
		{"crop at the limit", "", func(u *Unrecognised) { u.FaceJPEG = paddedJPEG(MaxUnrecognisedCropBytes) }},
		{"near miss", "", func(u *Unrecognised) {
			u.Kind, u.Vote = KindNearMiss, &Candidate{StudentID: "001308009911", Distance: 0.3, Margin: 0.07}
		}},
		{"descriptor", "", func(u *Unrecognised) { u.Descriptor = goldenDescriptor().Bytes() }},
		{"descriptor of 512", "", func(u *Unrecognised) { u.Descriptor = make(match.Descriptor, 512).Bytes() }},
		{"descriptor of 2", "", func(u *Unrecognised) { u.Descriptor = match.Descriptor{0.5, -0.5}.Bytes() }},
		{"descriptor NaN", "descriptor", func(u *Unrecognised) { u.Descriptor = descriptorBytes(7, float32(math.NaN())) }},
		{"descriptor inf", "descriptor", func(u *Unrecognised) { u.Descriptor = descriptorBytes(127, float32(math.Inf(1))) }},
		{"descriptor empty", "descriptor", func(u *Unrecognised) { u.Descriptor = []byte{} }},
		{"descriptor ragged", "descriptor", func(u *Unrecognised) { u.Descriptor = goldenDescriptor().Bytes()[:511] }},
		{"descriptor of 1", "descriptor", func(u *Unrecognised) { u.Descriptor = match.Descriptor{0.5}.Bytes() }},
		{"descriptor too long", "descriptor", func(u *Unrecognised) {
			u.Descriptor = make(match.Descriptor, match.MaxDescriptorLen+1).Bytes()
		}},
		{"schema 0", "schema", func(u *Unrecognised) { u.Schema = 0 }},
		{"capture id", "capture_id", func(u *Unrecognised) { u.CaptureID = "capture-1" }},
		{"school wildcard", "school_id", func(u *Unrecognised) { u.SchoolID = "a/#" }},
		{"gate plus", "gate_id", func(u *Unrecognised) { u.GateID = "+" }},
		{"direction", "direction", func(u *Unrecognised) { u.Direction = "" }},
		{"kind empty", "kind", func(u *Unrecognised) { u.Kind = "" }},
		{"kind unknown", "kind", func(u *Unrecognised) { u.Kind = "visitor" }},
		{"captured seconds", "captured_at", func(u *Unrecognised) { u.CapturedAt = 1788400512 }},
		{"no frames", "frames_described", func(u *Unrecognised) { u.FramesDescribed = 0 }},
		{"too many frames", "frames_described", func(u *Unrecognised) { u.FramesDescribed = 1001 }},
		{"model missing", "model", func(u *Unrecognised) { u.Model = match.ModelID{} }},
		{"gallery version", "gallery_version", func(u *Unrecognised) { u.GalleryVer = -1 }},
		{"crop missing", "face_jpeg", func(u *Unrecognised) { u.FaceJPEG = nil }},
		{"crop empty", "face_jpeg", func(u *Unrecognised) { u.FaceJPEG = []byte{} }},
		{"crop not jpeg", "face_jpeg", func(u *Unrecognised) { u.FaceJPEG = []byte("\x89PNG") }},
		{"crop truncated", "face_jpeg", func(u *Unrecognised) { j := tinyJPEG(); u.FaceJPEG = j[:len(j)-2] }},
		{"crop too big", "face_jpeg", func(u *Unrecognised) { u.FaceJPEG = paddedJPEG(MaxUnrecognisedCropBytes + 1) }},
		{"size negative", "quality.size_px", func(u *Unrecognised) { u.Quality.SizePx = -1 }},
		{"sharpness NaN", "quality.sharpness", func(u *Unrecognised) { u.Quality.Sharpness = math.NaN() }},
		{"yaw inf", "quality.yaw_deg", func(u *Unrecognised) { u.Quality.YawDeg = math.Inf(-1) }},
		{"brightness NaN", "quality.brightness", func(u *Unrecognised) { u.Quality.Brightness = math.NaN() }},
		{"no candidates", "candidates", func(u *Unrecognised) { u.Candidates = nil }},
		{"four candidates", "candidates", func(u *Unrecognised) {
			u.Candidates[2].Margin = 0.25
			u.Candidates = append(u.Candidates, Candidate{StudentID: "079212008888", Distance: 0.9375, Margin: 0})
		}},
		{"candidate id", "candidates[1].student_id", func(u *Unrecognised) { u.Candidates[1].StudentID = UnknownStudent }},
		{"candidate twice", "candidates[1].student_id", func(u *Unrecognised) { u.Candidates[1].StudentID = u.Candidates[0].StudentID }},
		{"distance NaN", "candidates[0].distance", func(u *Unrecognised) { u.Candidates[0].Distance = math.NaN() }},
		{"distance inf", "candidates[2].distance", func(u *Unrecognised) { u.Candidates[2].Distance = math.Inf(1) }},
		{"distance negative", "candidates[0].distance", func(u *Unrecognised) { u.Candidates[0].Distance = -0.1 }},
		{"margin NaN", "candidates[2].margin", func(u *Unrecognised) { u.Candidates[2].Margin = math.NaN() }},
		{"margin over 10", "candidates[2].margin", func(u *Unrecognised) { u.Candidates[2].Margin = 10.5 }},
		{"unsorted", "candidates[1].distance", func(u *Unrecognised) { u.Candidates[0], u.Candidates[1] = u.Candidates[1], u.Candidates[0] }},
		{"margin not the gap", "candidates[0].margin", func(u *Unrecognised) { u.Candidates[0].Margin = 0.07 }},
		{"near miss without vote", "vote", func(u *Unrecognised) { u.Kind = KindNearMiss }},
		{"vote on unrecognised", "vote", func(u *Unrecognised) { u.Vote = &Candidate{StudentID: "001308009911", Distance: 0.3} }},
		{"vote id", "vote.student_id", func(u *Unrecognised) {
			u.Kind, u.Vote = KindNearMiss, &Candidate{StudentID: "1234", Distance: 0.3}
		}},
		{"vote distance NaN", "vote.distance", func(u *Unrecognised) {
			u.Kind, u.Vote = KindNearMiss, &Candidate{StudentID: "001308009911", Distance: math.NaN()}
		}},
		{"vote margin inf", "vote.margin", func(u *Unrecognised) {
			u.Kind, u.Vote = KindNearMiss, &Candidate{StudentID: "001308009911", Distance: 0.3, Margin: math.Inf(1)}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := goldenUnrecognised()["unrecognised.json"]
			tc.mod(u)
			err := u.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("valid message refused: %v", err)
				}
				b, err := u.Encode()
				if err != nil {
					t.Fatal(err)
				}
				back, err := DecodeUnrecognised(b)
				if err != nil || !reflect.DeepEqual(back, u) {
					t.Fatalf("round trip: %v\n got %+v\nwant %+v", err, back, u)
				}
				return
			}
			var fe *conf.FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("got %v, want an error on %q", err, tc.field)
			}
			if _, err := u.Encode(); err == nil {
				t.Fatal("Encode accepted an invalid message")
			}
		})
	}
}

// TestUnrecognisedDescriptorValues: the descriptor decodes to the gate's
// values; a message without one has none; a bad one is refused on its
// field.
func TestUnrecognisedDescriptorValues(t *testing.T) {
	cases := []struct {
		name  string
		b     []byte
		want  match.Descriptor
		field string
	}{
		{"golden", goldenDescriptor().Bytes(), goldenDescriptor(), ""},
		{"absent", nil, nil, ""},
		{"NaN", descriptorBytes(0, float32(math.NaN())), nil, "descriptor"},
		{"ragged", []byte{1, 2, 3, 4, 5, 6}, nil, "descriptor"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := &Unrecognised{Descriptor: tc.b}
			d, err := u.DescriptorValues()
			var fe *conf.FieldError
			switch {
			case tc.field != "" && (!errors.As(err, &fe) || fe.Field != tc.field || d != nil):
				t.Fatalf("got %v, %v; want an error on %q", d, err, tc.field)
			case tc.field == "" && (err != nil || !reflect.DeepEqual(d, tc.want)):
				t.Fatalf("got %v, %v; want %v", d, err, tc.want)
			}
		})
	}
}

func TestDecodeUnrecognisedTable(t *testing.T) {
	good, err := goldenUnrecognised()["near_miss.json"].Encode()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		payload []byte
		field   string
	}{
		{"good", good, ""},
		{"empty", nil, "payload"},
		{"null", []byte("null"), "schema"},
		{"truncated", good[:len(good)/2], "payload"},
		{"trailing object", append(append([]byte(nil), good...), `{}`...), "payload"},
		{"trailing garbage", append(append([]byte(nil), good...), ` x`...), "payload"},
		{"unknown field", bytes.Replace(good, []byte(`{"schema"`), []byte(`{"student_id":"079212003456","schema"`), 1), "payload"},
		{"unknown candidate field", bytes.Replace(good, []byte(`"margin":0.0625`), []byte(`"margin":0.0625,"name":"x"`), 1), "payload"},
		{"NaN literal", bytes.Replace(good, []byte(`"distance":0.5,`), []byte(`"distance":NaN,`), 1), "payload"},
		{"crop not base64", bytes.Replace(good, []byte(`"face_jpeg":"`), []byte(`"face_jpeg":"!!`), 1), "payload"},
		{"candidates object", bytes.Replace(good, []byte(`"candidates":[`), []byte(`"candidates":{"a":[`), 1), "payload"},
		{"vote null", bytes.Replace(good, []byte(`"vote":{`), []byte(`"vote":null,"x":{`), 1), "payload"},
		{"oversize", append(append([]byte(nil), good...), bytes.Repeat([]byte(" "), MaxPayloadBytes)...), "payload"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u, err := DecodeUnrecognised(tc.payload)
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var fe *conf.FieldError
			if u != nil || !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("got %v, want an error on %q", err, tc.field)
			}
		})
	}
}

func TestParseGateTopic(t *testing.T) {
	cases := []struct {
		topic, school, gate, kind string
	}{
		{EventTopic("thcs-a", "gate-1"), "thcs-a", "gate-1", TopicKindEvents},
		{StatusTopic("thcs-a", "gate-1"), "thcs-a", "gate-1", TopicKindStatus},
		{HeartbeatTopic("thcs-a", "gate-1"), "thcs-a", "gate-1", TopicKindHeartbeat},
		{UnrecognisedTopic("thcs-a", "gate-1"), "thcs-a", "gate-1", TopicKindUnrecognised},
		{"diemdanh/v1/thcs-a/gate/gate-1/unrecognised", "thcs-a", "gate-1", TopicKindUnrecognised},
		{"diemdanh/v1/thcs-a/gate/gate-1/faces", "", "", ""},
		{"diemdanh/v1/thcs-a/gate/gate-1/near_miss", "", "", ""},
		{"diemdanh/v1/thcs-a/gate/gate-1/unrecognised/x", "", "", ""},
		{"diemdanh/v1/thcs-a/gate/+/unrecognised", "", "", ""},
		{"diemdanh/v1/THCS/gate/gate-1/unrecognised", "", "", ""},
		{"diemdanh/v2/thcs-a/gate/gate-1/unrecognised", "", "", ""},
		{"diemdanh/v1/thcs-a/gallery", "", "", ""},
	}
	for _, tc := range cases {
		s, g, k, ok := ParseGateTopic(tc.topic)
		if ok != (tc.kind != "") || s != tc.school || g != tc.gate || k != tc.kind {
			t.Errorf("%s: got %q %q %q %v, want %q %q %q", tc.topic, s, g, k, ok, tc.school, tc.gate, tc.kind)
		}
	}
}

// TestUnrecognisedPayloadLimit: the largest crop allowed, with three
// candidates, a vote and the longest descriptor, fits in one MQTT payload,
// and the decoder has the one payload limit.
func TestUnrecognisedPayloadLimit(t *testing.T) {
	u := goldenUnrecognised()["near_miss.json"]
	u.FaceJPEG = paddedJPEG(MaxUnrecognisedCropBytes)
	u.Descriptor = make(match.Descriptor, match.MaxDescriptorLen).Bytes()
	b, err := u.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > MaxPayloadBytes/2 {
		t.Fatalf("largest message is %d bytes, more than half of MaxPayloadBytes", len(b))
	}
	if _, err := DecodeUnrecognised(b); err != nil {
		t.Fatal(err)
	}
	over := []byte(string(b) + strings.Repeat(" ", MaxPayloadBytes+1-len(b)))
	var fe *conf.FieldError
	if _, err := DecodeUnrecognised(over); !errors.As(err, &fe) || fe.Field != "payload" {
		t.Fatalf("payload over MaxPayloadBytes: got %v", err)
	}
}

// paddedJPEG is a complete JPEG of exactly n bytes: tinyJPEG with a
// comment segment (0xFFFE) of filler after the start-of-image marker.
func paddedJPEG(n int) []byte {
	j := tinyJPEG()
	fill := n - len(j)
	var out []byte
	out = append(out, j[:2]...)
	for fill > 0 {
		seg := min(fill, 0xFFFF+2) // marker (2) + length (2, counting itself) + data
		if seg < 4 {
			panic("paddedJPEG: remainder too small for a segment")
		}
		if rest := fill - seg; rest > 0 && rest < 4 {
			seg -= 4
		}
		ln := seg - 2
		out = append(out, 0xFF, 0xFE, byte(ln>>8), byte(ln))
		out = append(out, bytes.Repeat([]byte{'x'}, seg-4)...)
		fill -= seg
	}
	return append(out, j[2:]...)
}

// FuzzDecodeUnrecognised: DecodeUnrecognised never panics, returns nil
// with every error, and whatever it accepts encodes (Encode), decodes to
// the same value and encodes identically.
func FuzzDecodeUnrecognised(f *testing.F) {
	addJSONSeeds(f, filepath.Join("testdata", "unrecognised"))
	f.Add([]byte(`{"schema":1,"candidates":[],"vote":null}`))
	f.Add([]byte(`{"schema":1,"face_jpeg":"","candidates":[{"student_id":"079212003456","distance":-0}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		u, err := DecodeUnrecognised(b)
		if err != nil {
			if u != nil {
				t.Fatal("message returned with an error")
			}
			return
		}
		enc, err := u.Encode()
		if err != nil {
			t.Fatalf("accepted message does not encode: %v", err)
		}
		u2, err := DecodeUnrecognised(enc)
		if err != nil {
			t.Fatalf("encoded message does not decode: %v\n%s", err, enc)
		}
		if !reflect.DeepEqual(u, u2) {
			t.Fatalf("round trip changed the message:\n%+v\n%+v", u, u2)
		}
		enc2, err := u2.Encode()
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable: %v", err)
		}
	})
}
