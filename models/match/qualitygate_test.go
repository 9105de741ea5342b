package match

import (
	"math"
	"reflect"
	"testing"

	"github.com/diemdanh/diemdanh/models/conf"
)

func TestQualityPolicyCheck(t *testing.T) {
	p := DefaultQualityPolicy()
	good := Quality{SizePx: 150, Sharpness: 100, YawDeg: 5, RollDeg: -3, Brightness: 120}
	with := func(f func(*Quality)) []Face {
		q := good
		f(&q)
		return []Face{{Quality: q}}
	}
	cases := []struct {
		name  string
		faces []Face
		want  []string
	}{
		{"good", []Face{{Quality: good}}, nil},
		{"none", nil, []string{ReasonNoFace}},
		{"two", []Face{{Quality: good}, {Quality: good}}, []string{ReasonManyFaces}},
		{"good and a small one", []Face{{Quality: good}, {Quality: Quality{SizePx: 30, Sharpness: 100, Brightness: 120}}}, nil},
		{"turned one and a good one", []Face{{Quality: Quality{SizePx: 200, Sharpness: 100, YawDeg: 60, Brightness: 120}}, {Quality: good}}, nil},
		{"two unusable: the larger's reasons", []Face{{Quality: Quality{SizePx: 30, Sharpness: 100, Brightness: 120}},
			{Quality: Quality{SizePx: 150, Sharpness: 2, Brightness: 120}}}, []string{ReasonManyFaces, ReasonBlurry}},
		{"small", with(func(q *Quality) { q.SizePx = 40 }), []string{ReasonTooSmall}},
		{"blurry", with(func(q *Quality) { q.Sharpness = 2 }), []string{ReasonBlurry}},
		{"nan sharpness", with(func(q *Quality) { q.Sharpness = math.NaN() }), []string{ReasonBlurry}},
		{"turned left", with(func(q *Quality) { q.YawDeg = -50 }), []string{ReasonTurned}},
		{"tilted", with(func(q *Quality) { q.RollDeg = 40 }), []string{ReasonTilted}},
		{"dark", with(func(q *Quality) { q.Brightness = 10 }), []string{ReasonTooDark}},
		{"bright", with(func(q *Quality) { q.Brightness = 250 }), []string{ReasonTooBright}},
		{"several", with(func(q *Quality) { q.SizePx = 10; q.Brightness = 5 }), []string{ReasonTooSmall, ReasonTooDark}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := p.Check(c.faces)
			if v.OK != (len(c.want) == 0) {
				t.Fatalf("OK=%v, reasons %v", v.OK, v.ReasonCodes())
			}
			if len(c.want) == 0 {
				if v.Error() != nil {
					t.Fatal("ok verdict has an error")
				}
				if v.Face < 0 || len(p.CheckQuality(c.faces[v.Face].Quality)) != 0 {
					t.Fatalf("face %d chosen", v.Face)
				}
				return
			}
			if got := v.ReasonCodes(); !reflect.DeepEqual(got, c.want) {
				t.Fatalf("reasons %v, want %v", got, c.want)
			}
			for _, r := range v.Reasons {
				if r.EN == "" || r.VI == "" || r.EN == r.Code {
					t.Fatalf("reason %q lacks plain-words text", r.Code)
				}
			}
		})
	}
}

func TestQualityPolicyValidate(t *testing.T) {
	cases := []struct {
		field string
		mod   func(*QualityPolicy)
	}{
		{"q.min_face_px", func(p *QualityPolicy) { p.MinFacePx = -1 }},
		{"q.min_sharpness", func(p *QualityPolicy) { p.MinSharpness = math.Inf(1) }},
		{"q.max_yaw_deg", func(p *QualityPolicy) { p.MaxYawDeg = 100 }},
		{"q.max_roll_deg", func(p *QualityPolicy) { p.MaxRollDeg = -2 }},
		{"q.min_brightness", func(p *QualityPolicy) { p.MinBrightness = 300 }},
		{"q.max_brightness", func(p *QualityPolicy) { p.MaxBrightness = 30 }},
	}
	if err := DefaultQualityPolicy().Validate("q"); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		p := DefaultQualityPolicy()
		c.mod(&p)
		err := p.Validate("q")
		fe, ok := err.(*conf.FieldError)
		if !ok || fe.Field != c.field {
			t.Errorf("%s: got %v", c.field, err)
		}
	}
}
