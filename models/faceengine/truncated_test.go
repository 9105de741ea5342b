package faceengine

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/errkind"
	"github.com/diemdanh/diemdanh/models/imagecheck"
	"gocv.io/x/gocv"
)

func testPhoto(t *testing.T, name string) []byte {
	t.Helper()
	dir, err := conf.TestDataDir()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "faces", "images", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pngOf decodes a real photo and re-encodes it as PNG (OpenCV's encoder).
func pngOf(t *testing.T, name string) []byte {
	t.Helper()
	m, _, err := DecodeMat(testPhoto(t, name), imagecheck.Limits{MaxSide: 800})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	buf, err := gocv.IMEncode(gocv.PNGFileExt, m)
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Close()
	return append([]byte(nil), buf.GetBytes()...)
}

// encodeAs re-encodes a real photo in another format (OpenCV's encoder).
func encodeAs(t *testing.T, ext, name string) []byte {
	t.Helper()
	m, _, err := DecodeMat(testPhoto(t, name), imagecheck.Limits{MaxSide: 800})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	buf, err := gocv.IMEncode(gocv.FileExt(ext), m)
	if err != nil {
		t.Fatal(err)
	}
	defer buf.Close()
	return append([]byte(nil), buf.GetBytes()...)
}

func testAsianBMP(t *testing.T) []byte {
	t.Helper()
	dir, err := conf.TestDataDir()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "asian", "casia-facev5", "000", "000_0.bmp"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSecurityEveryPrefixRefused: no strict prefix of a real JPEG, PNG or
// BMP passes imagecheck.Sniff, wherever the cut falls (headers, EXIF, tables, scans).
func TestSecurityEveryPrefixRefused(t *testing.T) {
	for _, f := range []struct {
		name string
		b    []byte
	}{{"joy.jpg", testPhoto(t, "joy.jpg")}, {"bona2.jpg", testPhoto(t, "bona2.jpg")}, {"joy.png", pngOf(t, "joy.jpg")}, {"casia.bmp", testAsianBMP(t)}} {
		var cuts []int
		for n := 0; n < 64; n++ { // the headers, byte by byte
			cuts = append(cuts, n)
		}
		for n := 64; n < len(f.b); n += max(1, len(f.b)/997) {
			cuts = append(cuts, n)
		}
		for _, n := range cuts {
			_, err := imagecheck.Sniff(f.b[:n], imagecheck.Limits{})
			if err == nil {
				t.Fatalf("%s cut to %d of %d bytes passes", f.name, n, len(f.b))
			}
			if k := errkind.Of(err); k != errkind.CorruptImage && k != errkind.EmptyImage {
				t.Fatalf("%s cut to %d: %v", f.name, n, err)
			}
		}
		for n := len(f.b) - 64; n < len(f.b); n++ { // the end, byte by byte
			if _, err := imagecheck.Sniff(f.b[:n], imagecheck.Limits{}); !errors.Is(err, imagecheck.ErrTruncated) {
				t.Fatalf("%s cut to %d of %d bytes: %v", f.name, n, len(f.b), err)
			}
		}
		if _, err := imagecheck.Sniff(f.b, imagecheck.Limits{}); err != nil {
			t.Fatalf("%s whole: %v", f.name, err)
		}
	}
}

// TestSecurityTruncatedImagesRefused: a real photo cut short — to a third,
// or by its last two bytes (the JPEG end-of-image marker, or the PNG's
// IEND CRC), or without the PNG's IEND chunk — is refused by imagecheck.Sniff and by
// DecodeMat with errkind.CorruptImage caused by imagecheck.ErrTruncated and a message
// naming the missing end, instead of being decoded with its missing part
// filled with grey. The whole files still decode, and data after a
// complete image (a phone's trailer) is ignored as decoders ignore it.
func TestSecurityTruncatedImagesRefused(t *testing.T) {
	lim := imagecheck.DefaultLimits()
	cut := func(b []byte, n int) []byte { return append([]byte(nil), b[:n]...) }
	type tc struct {
		name string
		b    []byte
		want string // "" = must decode; else a word of the error message
	}
	var cases []tc
	for _, name := range []string{"bona.jpg", "joy.jpg", "jimin5.jpg", "pristin.jpg"} {
		b := testPhoto(t, name)
		cases = append(cases,
			tc{name + " whole", b, ""},
			tc{name + " with a trailer after EOI", append(cut(b, len(b)), []byte("\x00\x00SEFHtrailer of a phone\x00")...), ""},
			tc{name + " first third", cut(b, len(b)/3), "end-of-image"},
			tc{name + " without its last 2 bytes (EOI)", cut(b, len(b)-2), "end-of-image"},
			tc{name + " cut inside its headers", cut(b, 700), "truncated"},
		)
	}
	p := pngOf(t, "joy.jpg")
	w := encodeAs(t, ".webp", "joy.jpg")
	bmp := testAsianBMP(t)
	cases = append(cases,
		tc{"joy.png whole", p, ""},
		tc{"joy.png first third", cut(p, len(p)/3), "IEND"},
		tc{"joy.png without IEND", cut(p, len(p)-12), "IEND"},
		tc{"joy.png without its last 2 bytes", cut(p, len(p)-2), "IEND"},
		tc{"casia bmp whole", bmp, ""},
		tc{"casia bmp first third", cut(bmp, len(bmp)/3), "BMP shorter"},
		tc{"casia bmp without its last 2 bytes", cut(bmp, len(bmp)-2), "BMP shorter"},
		tc{"joy.webp whole", w, ""},
		tc{"joy.webp first third", cut(w, len(w)/3), "WebP shorter"},
	)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			info, serr := imagecheck.Sniff(c.b, lim)
			m, _, derr := DecodeMat(c.b, lim)
			defer m.Close()
			if c.want == "" {
				if serr != nil || derr != nil || m.Empty() {
					t.Fatalf("whole image refused: sniff %v, decode %v", serr, derr)
				}
				return
			}
			for _, err := range []error{serr, derr} {
				if err == nil {
					t.Fatalf("truncated %s (%d bytes) accepted; decoded %dx%d", info.Format, len(c.b), m.Cols(), m.Rows())
				}
				if !errors.Is(err, imagecheck.ErrTruncated) || errkind.Of(err) != errkind.CorruptImage || !strings.Contains(err.Error(), c.want) ||
					!strings.Contains(err.Error(), "truncated") {
					t.Fatalf("error %q (kind %v): want corrupt_image caused by ErrTruncated, naming %q", err, errkind.Of(err), c.want)
				}
			}
			if !m.Empty() {
				t.Fatal("a Mat came back with the error")
			}
		})
	}
}
