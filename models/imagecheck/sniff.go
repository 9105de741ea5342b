package imagecheck

import (
	"bytes"
	"encoding/binary"
	"errors"
	"image"
	_ "image/gif" // DecodeConfig for sniffing (each format registers itself)
	_ "image/jpeg"
	_ "image/png"
	"io"

	"github.com/diemdanh/diemdanh/models/errkind"
	_ "golang.org/x/image/bmp"
	_ "golang.org/x/image/webp"
)

// Limits bound what the engine accepts, so a hostile upload cannot
// exhaust memory (a 10,000×10,000 image is 300 MB decoded).
type Limits struct {
	MaxBytes  int `yaml:"max_bytes"`  // encoded size
	MaxPixels int `yaml:"max_pixels"` // width × height, checked from the header before decoding
	MaxSide   int `yaml:"max_side"`   // larger images are downscaled to this side before detection
}

// DefaultLimits suit 1–24 MP phone and camera photos.
func DefaultLimits() Limits {
	return Limits{MaxBytes: 20 << 20, MaxPixels: 40_000_000, MaxSide: 1600}
}

// Info is what the header says about an encoded image.
type Info struct {
	Format        string
	Width, Height int
	Components    int // JPEG only: 1 grayscale, 3 colour, 4 CMYK; 0 otherwise
}

// ErrTruncated is the cause (errors.Is) of the errkind.CorruptImage error for
// an image whose end is missing: a JPEG with no end-of-image marker after
// its last scan, a PNG with no IEND chunk, a BMP or WebP shorter than its
// header says. OpenCV's decoder would fill the missing part with grey and
// say nothing, so such a photo must never reach it.
var ErrTruncated = errors.New("the file is incomplete (truncated)")

// Sniff reads the header of b, enforces the byte and pixel limits, and
// checks that the file is complete (see ErrTruncated): every decoding
// path (faceengine.DecodeMat, Recognize, RecognizeJPEG, hub enrolment) starts here.
// The completeness check walks the file's structure (JPEG markers and the
// entropy-coded data up to EOI, PNG chunks up to IEND) without decoding
// pixels: about 1 ms for a 2 MB photo. Data after a complete image (a
// phone's trailer, a motion photo's video) is ignored, as decoders do.
func Sniff(b []byte, lim Limits) (Info, error) {
	if len(b) == 0 {
		return Info{}, errkind.New(errkind.EmptyImage, "image", nil, "no bytes")
	}
	if lim.MaxBytes > 0 && len(b) > lim.MaxBytes {
		return Info{}, errkind.New(errkind.TooLarge, "image", nil, "%d bytes exceeds limit %d", len(b), lim.MaxBytes)
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(b))
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return Info{Format: format}, errkind.New(errkind.CorruptImage, "image", ErrTruncated, "the %s header is cut short", format)
	}
	if err != nil {
		return Info{}, errkind.New(errkind.CorruptImage, "image", err, "unreadable header")
	}
	info := Info{Format: format, Width: cfg.Width, Height: cfg.Height}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return info, errkind.New(errkind.EmptyImage, "image", nil, "zero-sized %s", format)
	}
	if lim.MaxPixels > 0 && cfg.Width*cfg.Height > lim.MaxPixels {
		return info, errkind.New(errkind.TooLarge, "image", nil, "%dx%d is over %d pixels", cfg.Width, cfg.Height, lim.MaxPixels)
	}
	if format == "jpeg" {
		info.Components = jpegComponents(b)
	}
	if err := checkComplete(b, format); err != nil {
		return info, err
	}
	return info, nil
}

// checkComplete checks that b, a format image whose header decoded, is
// whole. Formats it does not know (GIF: OpenCV cannot decode it) pass.
func checkComplete(b []byte, format string) error {
	switch format {
	case "jpeg":
		return JPEGComplete(b)
	case "png":
		return pngComplete(b)
	case "bmp":
		return bmpComplete(b)
	case "webp":
		if len(b) < 12 || int64(binary.LittleEndian.Uint32(b[4:]))+8 > int64(len(b)) {
			return truncated("WebP shorter than its RIFF header says")
		}
	}
	return nil
}

// truncated is the error for an image whose end is missing.
func truncated(what string) error {
	return errkind.New(errkind.CorruptImage, "image", ErrTruncated, "%s", what)
}

// malformed is the error for a structure no decoder would read.
func malformed(what string) error { return errkind.New(errkind.CorruptImage, "image", nil, "%s", what) }

// JPEGComplete walks the JPEG's marker segments by their lengths and the
// entropy-coded data after each SOS (skipping stuffed FF 00 and RST
// markers) until EOI (FF D9); it returns nil when EOI is reached. A
// segment's length running past the end, or the end of the file before
// EOI, is truncation — also for a file cut right after the EOI of its
// EXIF thumbnail (inside APP1, which is skipped by its length).
func JPEGComplete(b []byte) error {
	const missing = "no JPEG end-of-image marker (FF D9)"
	if len(b) < 4 || b[0] != 0xFF || b[1] != 0xD8 {
		return malformed("no JPEG start-of-image marker")
	}
	i := 2
	for {
		// The next marker; libjpeg skips extraneous bytes before it.
		j := bytes.IndexByte(b[i:], 0xFF)
		if j < 0 {
			return truncated(missing)
		}
		i += j
		for i < len(b) && b[i] == 0xFF { // fill bytes
			i++
		}
		if i >= len(b) {
			return truncated(missing)
		}
		m := b[i]
		i++
		switch {
		case m == 0xD9: // EOI
			return nil
		case m == 0x00, m == 0x01, m == 0xD8, m >= 0xD0 && m <= 0xD7:
			continue // no length (a stray FF 00 outside a scan is skipped too)
		}
		if i+2 > len(b) {
			return truncated(missing)
		}
		n := int(binary.BigEndian.Uint16(b[i:]))
		if n < 2 {
			return malformed("JPEG segment with a bad length")
		}
		if i+n > len(b) {
			return truncated(missing)
		}
		i += n
		if m != 0xDA { // not SOS
			continue
		}
		// Entropy-coded data: up to the next FF that is not FF 00 or RSTn.
		for {
			j := bytes.IndexByte(b[i:], 0xFF)
			if j < 0 {
				return truncated(missing)
			}
			k := i + j + 1
			for k < len(b) && b[k] == 0xFF {
				k++
			}
			if k >= len(b) {
				return truncated(missing)
			}
			if x := b[k]; x == 0x00 || (x >= 0xD0 && x <= 0xD7) {
				i = k + 1
				continue
			}
			i += j // at the marker; the outer loop reads it
			break
		}
	}
}

// pngComplete walks the PNG's chunks by their lengths up to IEND.
func pngComplete(b []byte) error {
	const missing = "no PNG end chunk (IEND)"
	i := 8 // signature
	for {
		if i+8 > len(b) {
			return truncated(missing)
		}
		n := int64(binary.BigEndian.Uint32(b[i:]))
		if n > 1<<31-1 {
			return malformed("PNG chunk with a bad length")
		}
		end := int64(i) + 12 + n // length, type, data, CRC
		if end > int64(len(b)) {
			return truncated(missing)
		}
		if string(b[i+4:i+8]) == "IEND" {
			return nil
		}
		i = int(end)
	}
}

// bmpComplete checks that an uncompressed BMP holds all its rows.
func bmpComplete(b []byte) error {
	if len(b) < 30 {
		return truncated("BMP header cut short")
	}
	off := int64(binary.LittleEndian.Uint32(b[10:]))
	hdr := binary.LittleEndian.Uint32(b[14:])
	if hdr < 40 || len(b) < 34 {
		return nil // OS/2 headers: leave it to the decoder
	}
	w := int64(int32(binary.LittleEndian.Uint32(b[18:])))
	h := int64(int32(binary.LittleEndian.Uint32(b[22:])))
	bpp := int64(binary.LittleEndian.Uint16(b[28:]))
	if comp := binary.LittleEndian.Uint32(b[30:]); comp != 0 && comp != 3 {
		return nil // RLE: the decoder reads it
	}
	if h < 0 {
		h = -h
	}
	if w <= 0 || bpp == 0 || bpp > 64 {
		return nil
	}
	row := (w*bpp + 31) / 32 * 4
	if off > int64(len(b)) || h > (int64(len(b))-off)/row {
		return truncated("BMP shorter than its pixel rows")
	}
	return nil
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
