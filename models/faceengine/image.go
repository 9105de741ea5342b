package faceengine

import (
	"bytes"
	"image"
	"image/jpeg"

	"github.com/diemdanh/diemdanh/models/errkind"
	"github.com/diemdanh/diemdanh/models/imagecheck"
	"gocv.io/x/gocv"
)

// DecodeMat sniffs, bounds and decodes any supported format (JPEG, PNG, BMP,
// GIF, WebP) into a 3-channel BGR Mat no larger than lim.MaxSide. The caller
// closes the Mat.
func DecodeMat(b []byte, lim imagecheck.Limits) (gocv.Mat, imagecheck.Info, error) {
	info, err := imagecheck.Sniff(b, lim)
	if err != nil {
		return gocv.NewMat(), info, err
	}
	m, err := gocv.IMDecode(b, gocv.IMReadColor)
	if err != nil || m.Empty() {
		m.Close()
		return gocv.NewMat(), info, errkind.New(errkind.CorruptImage, "image", err, "cannot decode %s", info.Format)
	}
	if lim.MaxSide > 0 {
		m = fitSide(m, lim.MaxSide)
	}
	return m, info, nil
}

// fitSide downscales m (consuming it) so its longer side is at most side.
func fitSide(m gocv.Mat, side int) gocv.Mat {
	w, h := m.Cols(), m.Rows()
	long := w
	if h > long {
		long = h
	}
	if long <= side {
		return m
	}
	s := float64(side) / float64(long)
	out := gocv.NewMat()
	gocv.Resize(m, &out, image.Pt(int(float64(w)*s+0.5), int(float64(h)*s+0.5)), 0, 0, gocv.InterpolationArea)
	m.Close()
	return out
}

// EncodeJPEG encodes a BGR Mat as JPEG at the given quality (1–100).
func EncodeJPEG(m gocv.Mat, quality int) ([]byte, error) {
	buf, err := gocv.IMEncodeWithParams(gocv.JPEGFileExt, m, []int{gocv.IMWriteJpegQuality, quality})
	if err != nil {
		return nil, errkind.New(errkind.Unknown, "image", err, "jpeg encode")
	}
	defer buf.Close()
	return append([]byte(nil), buf.GetBytes()...), nil
}

// encodeImageJPEG is the pure-Go encoder, used for test fixtures.
func encodeImageJPEG(img image.Image, q int) []byte {
	var bb bytes.Buffer
	_ = jpeg.Encode(&bb, img, &jpeg.Options{Quality: q})
	return bb.Bytes()
}
