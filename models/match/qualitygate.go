package match

import (
	"fmt"
	"math"

	"github.com/diemdanh/diemdanh/models/conf"
)

// QualityPolicy is the shared set of quality gates a face photo or crop
// must pass before it is enrolled (hub), put into a gallery (`edge gallery
// build`) or allowed to vote at the gate. Zero limits are off.
type QualityPolicy struct {
	MinFacePx     int     `yaml:"min_face_px" json:"min_face_px"`       // face box width in source pixels
	MinSharpness  float64 `yaml:"min_sharpness" json:"min_sharpness"`   // Quality.Sharpness (Laplacian variance at 112 px)
	MaxYawDeg     float64 `yaml:"max_yaw_deg" json:"max_yaw_deg"`       // |yaw| limit
	MaxRollDeg    float64 `yaml:"max_roll_deg" json:"max_roll_deg"`     // |roll| limit
	MinBrightness float64 `yaml:"min_brightness" json:"min_brightness"` // mean grey of the face, 0–255
	MaxBrightness float64 `yaml:"max_brightness" json:"max_brightness"`
}

// DefaultQualityPolicy is strict enough for enrolment photos: a face box
// at least 64 px wide (the gate's own min_describe_px; the limit was 80,
// dlib HOG's smallest face, until YuNet became the detector: its boxes are
// about 0.8–1.0× as wide as HOG's for the same face), not blurred,
// roughly frontal, neither under- nor over-exposed.
func DefaultQualityPolicy() QualityPolicy {
	return QualityPolicy{MinFacePx: 64, MinSharpness: 15, MaxYawDeg: 30, MaxRollDeg: 25, MinBrightness: 40, MaxBrightness: 225}
}

// Validate names the first bad field under prefix.
func (p QualityPolicy) Validate(prefix string) error {
	switch {
	case p.MinFacePx < 0 || p.MinFacePx > 4000:
		return conf.Fieldf(prefix+".min_face_px", "must be 0..4000, got %d", p.MinFacePx)
	case !finite(p.MinSharpness) || p.MinSharpness < 0:
		return conf.Fieldf(prefix+".min_sharpness", "must be a number ≥ 0")
	case !finite(p.MaxYawDeg) || p.MaxYawDeg < 0 || p.MaxYawDeg > 90:
		return conf.Fieldf(prefix+".max_yaw_deg", "must be 0..90 (0 = off), got %g", p.MaxYawDeg)
	case !finite(p.MaxRollDeg) || p.MaxRollDeg < 0 || p.MaxRollDeg > 90:
		return conf.Fieldf(prefix+".max_roll_deg", "must be 0..90 (0 = off), got %g", p.MaxRollDeg)
	case !finite(p.MinBrightness) || p.MinBrightness < 0 || p.MinBrightness > 255:
		return conf.Fieldf(prefix+".min_brightness", "must be 0..255, got %g", p.MinBrightness)
	case !finite(p.MaxBrightness) || p.MaxBrightness < 0 || p.MaxBrightness > 255:
		return conf.Fieldf(prefix+".max_brightness", "must be 0..255 (0 = off), got %g", p.MaxBrightness)
	case p.MaxBrightness > 0 && p.MaxBrightness <= p.MinBrightness:
		return conf.Fieldf(prefix+".max_brightness", "must be above min_brightness")
	}
	return nil
}

// Quality rejection reason codes. They are stable identifiers for UIs and
// logs; Messages gives the plain-words text.
const (
	ReasonNoFace     = "no_face"
	ReasonManyFaces  = "many_faces"
	ReasonTooSmall   = "too_small"
	ReasonBlurry     = "blurry"
	ReasonTurned     = "turned"
	ReasonTilted     = "tilted"
	ReasonTooDark    = "too_dark"
	ReasonTooBright  = "too_bright"
	ReasonUnreadable = "unreadable"
)

// QualityReason is one plain-words reason a photo was refused.
type QualityReason struct {
	Code string `json:"code"`
	EN   string `json:"en"`
	VI   string `json:"vi"`
}

func (r QualityReason) String() string { return r.Code + ": " + r.EN }

var reasonText = map[string][2]string{
	ReasonNoFace:     {"no face was found in the photo", "không tìm thấy khuôn mặt trong ảnh"},
	ReasonManyFaces:  {"more than one face is in the photo; use a photo of the pupil alone", "ảnh có nhiều hơn một khuôn mặt; hãy dùng ảnh chỉ có một học sinh"},
	ReasonTooSmall:   {"the face is too small; move closer or crop less", "khuôn mặt quá nhỏ; hãy chụp gần hơn"},
	ReasonBlurry:     {"the photo is blurred; hold still and focus", "ảnh bị mờ; hãy giữ yên máy và lấy nét"},
	ReasonTurned:     {"the face is turned to the side; look straight at the camera", "khuôn mặt quay sang bên; hãy nhìn thẳng vào máy ảnh"},
	ReasonTilted:     {"the head is tilted; hold it upright", "đầu bị nghiêng; hãy giữ thẳng đầu"},
	ReasonTooDark:    {"the face is too dark; add light", "khuôn mặt quá tối; hãy chụp nơi đủ sáng"},
	ReasonTooBright:  {"the face is over-exposed; avoid direct light or flash", "khuôn mặt bị cháy sáng; tránh ánh sáng trực tiếp hoặc đèn flash"},
	ReasonUnreadable: {"the file is not a readable image", "tệp không phải là ảnh đọc được"},
}

// Reason returns the reason for code with its English and Vietnamese text.
func Reason(code string) QualityReason {
	t, ok := reasonText[code]
	if !ok {
		return QualityReason{Code: code, EN: code, VI: code}
	}
	return QualityReason{Code: code, EN: t[0], VI: t[1]}
}

// QualityVerdict is the outcome of Check.
type QualityVerdict struct {
	OK      bool            `json:"ok"`
	Face    int             `json:"face"` // index of the face checked; -1 when none
	Reasons []QualityReason `json:"reasons,omitempty"`
}

// Check applies the policy to the faces found in one photo: exactly one
// face must pass every limit (see CheckQuality). Faces that fail them do
// not count, so a blurred, turned or small face at the photo's edge (YuNet
// finds those; dlib's HOG did not) does not reject the photo, while two
// usable faces do (ReasonManyFaces: whose photo is it?). When no face
// passes, the largest one's reasons are given, after ReasonManyFaces when
// there were several (a group photo).
func (p QualityPolicy) Check(faces []Face) QualityVerdict {
	if len(faces) == 0 {
		return QualityVerdict{Face: -1, Reasons: []QualityReason{Reason(ReasonNoFace)}}
	}
	pass, n, largest := -1, 0, 0
	for i, f := range faces {
		if len(p.CheckQuality(f.Quality)) == 0 {
			if pass < 0 {
				pass = i
			}
			n++
		}
		if f.Quality.SizePx > faces[largest].Quality.SizePx {
			largest = i
		}
	}
	switch {
	case n == 1:
		return QualityVerdict{OK: true, Face: pass}
	case n > 1:
		return QualityVerdict{Face: -1, Reasons: []QualityReason{Reason(ReasonManyFaces)}}
	}
	rs := p.CheckQuality(faces[largest].Quality)
	if len(faces) > 1 {
		rs = append([]QualityReason{Reason(ReasonManyFaces)}, rs...)
	}
	return QualityVerdict{Face: largest, Reasons: rs}
}

// CheckQuality applies the per-face limits (size, sharpness, pose,
// brightness) to one face's quality figures. Nil means it passes.
func (p QualityPolicy) CheckQuality(q Quality) []QualityReason {
	var rs []QualityReason
	if p.MinFacePx > 0 && q.SizePx < p.MinFacePx {
		rs = append(rs, Reason(ReasonTooSmall))
	}
	if p.MinSharpness > 0 && !(q.Sharpness >= p.MinSharpness) {
		rs = append(rs, Reason(ReasonBlurry))
	}
	if p.MaxYawDeg > 0 && !(math.Abs(q.YawDeg) <= p.MaxYawDeg) {
		rs = append(rs, Reason(ReasonTurned))
	}
	if p.MaxRollDeg > 0 && !(math.Abs(q.RollDeg) <= p.MaxRollDeg) {
		rs = append(rs, Reason(ReasonTilted))
	}
	if !(q.Brightness >= p.MinBrightness) {
		rs = append(rs, Reason(ReasonTooDark))
	}
	if p.MaxBrightness > 0 && !(q.Brightness <= p.MaxBrightness) {
		rs = append(rs, Reason(ReasonTooBright))
	}
	return rs
}

// ReasonCodes lists the codes of a verdict, for compact logs and JSON.
func (v QualityVerdict) ReasonCodes() []string {
	out := make([]string, len(v.Reasons))
	for i, r := range v.Reasons {
		out[i] = r.Code
	}
	return out
}

// Error returns nil when the verdict is OK, else an error listing the reasons.
func (v QualityVerdict) Error() error {
	if v.OK {
		return nil
	}
	return fmt.Errorf("quality: %v", v.ReasonCodes())
}
