package gatekit

import (
	"bytes"
	"encoding/binary"
	"image"
	_ "image/gif" // DecodeConfig for sniffing
	"image/jpeg"
	_ "image/png"

	"gocv.io/x/gocv"
	_ "golang.org/x/image/bmp"
	_ "golang.org/x/image/webp"
)

// ImageLimits bound what the engine accepts, so a hostile upload cannot
// exhaust memory (a 10,000×10,000 image is 300 MB decoded).
type ImageLimits struct {
	MaxBytes  int `yaml:"max_bytes"`  // encoded size
	MaxPixels int `yaml:"max_pixels"` // width × height, checked from the header before decoding
	MaxSide   int `yaml:"max_side"`   // larger images are downscaled to this side before detection
}

// DefaultImageLimits suit 1–24 MP phone and camera photos.
func DefaultImageLimits() ImageLimits {
	return ImageLimits{MaxBytes: 20 << 20, MaxPixels: 40_000_000, MaxSide: 1600}
}

// ImageInfo is what the header says about an encoded image.
type ImageInfo struct {
	Format        string
	Width, Height int
	Components    int // JPEG only: 1 grayscale, 3 colour, 4 CMYK; 0 otherwise
}

// Sniff reads only the header of b and enforces the byte and pixel limits.
func Sniff(b []byte, lim ImageLimits) (ImageInfo, error) {
	if len(b) == 0 {
		return ImageInfo{}, errf(KindEmptyImage, "image", nil, "no bytes")
	}
	if lim.MaxBytes > 0 && len(b) > lim.MaxBytes {
		return ImageInfo{}, errf(KindTooLarge, "image", nil, "%d bytes exceeds limit %d", len(b), lim.MaxBytes)
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		return ImageInfo{}, errf(KindCorruptImage, "image", err, "unreadable header")
	}
	info := ImageInfo{Format: format, Width: cfg.Width, Height: cfg.Height}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return info, errf(KindEmptyImage, "image", nil, "zero-sized %s", format)
	}
	if lim.MaxPixels > 0 && cfg.Width*cfg.Height > lim.MaxPixels {
		return info, errf(KindTooLarge, "image", nil, "%dx%d is over %d pixels", cfg.Width, cfg.Height, lim.MaxPixels)
	}
	if format == "jpeg" {
		info.Components = jpegComponents(b)
	}
	return info, nil
}

// jpegComponents finds the SOF marker and returns its component count.
func jpegComponents(b []byte) int {
	for i := 2; i+9 < len(b); {
		if b[i] != 0xFF {
			i++
			continue
		}
		m := b[i+1]
		if m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC {
			return int(b[i+9])
		}
		if m == 0xD8 || m == 0x01 || (m >= 0xD0 && m <= 0xD7) || m == 0xFF {
			i += 2
			continue
		}
		i += 2 + int(binary.BigEndian.Uint16(b[i+2:]))
	}
	return 0
}

// DecodeMat sniffs, bounds and decodes any supported format (JPEG, PNG, BMP,
// GIF, WebP) into a 3-channel BGR Mat no larger than lim.MaxSide. The caller
// closes the Mat.
func DecodeMat(b []byte, lim ImageLimits) (gocv.Mat, ImageInfo, error) {
	info, err := Sniff(b, lim)
	if err != nil {
		return gocv.NewMat(), info, err
	}
	m, err := gocv.IMDecode(b, gocv.IMReadColor)
	if err != nil || m.Empty() {
		m.Close()
		return gocv.NewMat(), info, errf(KindCorruptImage, "image", err, "cannot decode %s", info.Format)
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
		return nil, errf(KindUnknown, "image", err, "jpeg encode")
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
