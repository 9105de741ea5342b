package enrol

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"image"
	"strings"
	"unicode"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/errkind"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/imagecheck"
	"github.com/diemdanh/diemdanh/models/match"
	"gocv.io/x/gocv"
)

// analysis is a photo after the per-photo checks.
type analysis struct {
	v    Verdict
	desc match.Descriptor
	keep []byte // the decoded, downscaled, metadata-free JPEG to store
	src  string // hash of the uploaded bytes: the same file is never enrolled twice
}

func reject(v Verdict, codes ...string) Verdict {
	v.Status = StatusRejected
	for _, c := range codes {
		v.Reasons = append(v.Reasons, Reason(c))
	}
	return v
}

// analyze runs the per-photo checks (no database access).
func (s *Service) analyze(ctx context.Context, i int, p Photo) analysis {
	v := Verdict{Index: i}
	name, ok := CleanName(p.Name)
	if !ok {
		v.File = strings.Map(func(r rune) rune {
			if unicode.IsPrint(r) && r != '/' && r != '\\' {
				return r
			}
			return '_'
		}, truncate(p.Name, 80))
		return analysis{v: reject(v, ReasonBadName)}
	}
	v.File = name
	lim := s.engine().Limits()
	if lim.MaxBytes > 0 && (len(p.Data) > lim.MaxBytes || p.Size > int64(lim.MaxBytes)) {
		return analysis{v: reject(v, ReasonTooLarge)}
	}
	m, err := s.decode(p.Data, lim)
	if err != nil {
		switch {
		case errkind.Of(err) == errkind.TooLarge:
			if lim.MaxBytes > 0 && len(p.Data) > lim.MaxBytes {
				return analysis{v: reject(v, ReasonTooLarge)}
			}
			return analysis{v: reject(v, ReasonTooManyPx)}
		case errors.Is(err, imagecheck.ErrTruncated):
			return analysis{v: reject(v, ReasonTruncated)}
		default:
			return analysis{v: reject(v, match.ReasonUnreadable)}
		}
	}
	defer func() { m.Close() }()
	faces, err := s.engine().RecognizeMat(ctx, m)
	if err == nil && len(faces) == 0 && lim.MaxSide > s.config().DetectSide {
		// Small faces (a group photo) may vanish at DetectSide: look again
		// at the engine's full working size before saying "no face".
		if big, _, derr := faceengine.DecodeMat(p.Data, lim); derr == nil {
			if max(big.Cols(), big.Rows()) > max(m.Cols(), m.Rows()) {
				if f2, err2 := s.engine().RecognizeMat(ctx, big); err2 == nil && len(f2) > 0 {
					m.Close()
					m, faces = big, f2
				} else {
					big.Close()
				}
			} else {
				big.Close()
			}
		}
	}
	if err == nil && len(faces) == 0 && s.config().RetryNoFaceSide > 0 && max(m.Cols(), m.Rows()) > s.config().RetryNoFaceSide {
		// HOG also misses some very large faces: try smaller.
		sc := float64(s.config().RetryNoFaceSide) / float64(max(m.Cols(), m.Rows()))
		small := gocv.NewMat()
		gocv.Resize(m, &small, image.Pt(0, 0), sc, sc, gocv.InterpolationArea)
		m.Close()
		m = small
		faces, err = s.engine().RecognizeMat(ctx, m)
	}
	if err != nil {
		if ctx.Err() != nil {
			return analysis{v: reject(v, ReasonEngine)}
		}
		s.log.Warn("enrol: engine failed", "file", name, "err", err)
		return analysis{v: reject(v, ReasonEngine)}
	}
	v.Faces = len(faces)
	qv := s.config().Quality.Check(faces)
	if qv.Face >= 0 {
		q := faces[qv.Face].Quality
		v.Quality = &q
	}
	if !qv.OK {
		v.Status = StatusRejected
		v.Reasons = qv.Reasons
		return analysis{v: v}
	}
	f := faces[qv.Face]
	v.CropJPEG = crop(m, f.Box)
	keep, err := faceengine.EncodeJPEG(m, 92)
	if err != nil {
		return analysis{v: reject(v, ReasonEngine)}
	}
	h := sha256.Sum256(p.Data)
	return analysis{v: v, desc: f.Descriptor, keep: keep, src: hex.EncodeToString(h[:12])}
}

// decode checks the limits from the header, then decodes at the smallest
// JPEG DCT scale (1/2, 1/4, 1/8) that still leaves DetectSide pixels, and
// downscales to DetectSide.
func (s *Service) decode(b []byte, lim imagecheck.Limits) (gocv.Mat, error) {
	info, err := imagecheck.Sniff(b, lim)
	if err != nil {
		return gocv.NewMat(), err
	}
	side := s.config().DetectSide
	flag := gocv.IMReadColor
	if info.Format == "jpeg" {
		long := max(info.Width, info.Height)
		switch {
		case long/8 >= side:
			flag = gocv.IMReadReducedColor8
		case long/4 >= side:
			flag = gocv.IMReadReducedColor4
		case long/2 >= side:
			flag = gocv.IMReadReducedColor2
		}
	}
	m, err := gocv.IMDecode(b, flag)
	if err != nil || m.Empty() {
		m.Close()
		if info.Format != "jpeg" || flag == gocv.IMReadColor {
			lim.MaxSide = side
			m2, _, err2 := faceengine.DecodeMat(b, lim)
			return m2, err2
		}
		return gocv.NewMat(), &errkind.Error{Kind: errkind.CorruptImage, Op: "image", Msg: "cannot decode"}
	}
	if long := max(m.Cols(), m.Rows()); long > side {
		sc := float64(side) / float64(long)
		out := gocv.NewMat()
		gocv.Resize(m, &out, image.Pt(0, 0), sc, sc, gocv.InterpolationArea)
		m.Close()
		m = out
	}
	return m, nil
}

// truncate bounds s to n bytes, never cutting inside a rune.
func truncate(s string, n int) string { return conf.Truncate(s, n, conf.Bytes, "") }

// crop cuts the face with a margin and scales it to at most 200 px.
func crop(m gocv.Mat, box image.Rectangle) []byte {
	mx, my := box.Dx()/4, box.Dy()/3
	r := image.Rect(box.Min.X-mx, box.Min.Y-my, box.Max.X+mx, box.Max.Y+my/2).Intersect(image.Rect(0, 0, m.Cols(), m.Rows()))
	if r.Dx() < 4 || r.Dy() < 4 {
		return nil
	}
	roi := m.Region(r)
	defer roi.Close()
	out := roi
	if r.Dx() > 200 {
		sc := 200 / float64(r.Dx())
		small := gocv.NewMat()
		defer small.Close()
		gocv.Resize(roi, &small, image.Pt(0, 0), sc, sc, gocv.InterpolationArea)
		out = small
	}
	b, err := faceengine.EncodeJPEG(out, 88)
	if err != nil {
		return nil
	}
	return b
}
