package app

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/diemdanh/diemdanh/models/conf"
)

// The demo's pupils come from a package on a registry, fetched (never
// committed) by models/fetch-demo.sh into a cache outside the clone:
// the test images of the PyPI source package face_recognition 1.3.0.
const (
	demoPhotoPackage = "face_recognition 1.3.0 (PyPI source package, MIT)"
	demoPhotoLicence = "official White House photos: works of the US federal government, public domain"
	demoPhotoFetch   = "bash models/fetch-demo.sh"
)

// demoPhoto is one photo of the package with its pinned SHA-256.
type demoPhoto struct{ File, SHA256 string }

// demoPhotoFiles mirrors the photo lines of models/DEMO_PHOTOS.SHA256SUMS
// (TestDemoPhotoSumsMatchFetchScript keeps the two equal).
func demoPhotoFiles() []demoPhoto {
	return []demoPhoto{
		{"biden.jpg", "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c"},
		{"obama.jpg", "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6"},
		{"obama2.jpg", "a7efcc907375274796f39646510704aa86672d59f6d5469d69af3c85590976a6"},
		{"obama3.jpg", "76ac6bf97c36dc2da0ad16a537d6a5ac1b10f48d49aac29a0cca9a17cdbc3ca3"},
	}
}

// demoPerson is one demo pupil made from the package's photos. The
// package's obama_partial_face*.jpg are crops of obama.jpg and are not
// used: enrolling them and walking obama.jpg would walk an enrolment photo.
type demoPerson struct {
	Label  string   // the simulator's person label (file name without digits)
	Name   string   // shown on the board
	Photos []string // the simulator walks one and enrols the others
}

func demoPeople() []demoPerson {
	return []demoPerson{
		{Label: "obama", Name: "Barack Obama", Photos: []string{"obama.jpg", "obama2.jpg", "obama3.jpg"}},
		{Label: "biden", Name: "Joe Biden", Photos: []string{"biden.jpg"}},
	}
}

// DefaultDemoPhotosDir is where models/fetch-demo.sh puts the demo photos:
// $DEMO_PHOTOS_DIR, else $DIEMDANH_CACHE/demo-photos, else
// <user cache dir>/diemdanh/demo-photos (~/.cache/diemdanh/demo-photos).
func DefaultDemoPhotosDir() string {
	if d := os.Getenv("DEMO_PHOTOS_DIR"); d != "" {
		return d
	}
	cache := os.Getenv("DIEMDANH_CACHE")
	if cache == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			base = filepath.Join(os.TempDir(), ".cache")
		}
		cache = filepath.Join(base, "diemdanh")
	}
	return filepath.Join(cache, "demo-photos")
}

// missingDemoPhotos names each photo absent from dir or whose checksum
// differs from the pinned one; nil means all are present and verified.
func missingDemoPhotos(dir string) []string {
	var out []string
	for _, f := range demoPhotoFiles() {
		got, err := conf.FileSHA256(filepath.Join(dir, f.File))
		switch {
		case err != nil:
			out = append(out, f.File+" (not found)")
		case got != f.SHA256:
			out = append(out, f.File+" (checksum differs)")
		}
	}
	return out
}

// layoutDemoPhotos copies the photos from src into dst (emptied first) as
// the simulator reads a flat folder: obama.jpg, obama2.jpg, obama3.jpg are
// one person. The simulator enrols a person from some photos and walks
// another, and takes a person with one photo for a visitor; so a person
// with one photo (Joe Biden) is copied twice (biden.jpg, biden2.jpg): the
// same photo is enrolled and walked, through the simulator's scale, light
// and blur.
func layoutDemoPhotos(src, dst string) error {
	if err := os.RemoveAll(dst); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if err := os.MkdirAll(dst, 0o750); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	for _, p := range demoPeople() {
		names := p.Photos
		if len(names) == 1 {
			names = []string{names[0], p.Label + "2" + filepath.Ext(names[0])}
		}
		for i, name := range names {
			b, err := os.ReadFile(filepath.Join(src, p.Photos[min(i, len(p.Photos)-1)]))
			if err != nil {
				return fmt.Errorf("demo: %w", err)
			}
			if err := os.WriteFile(filepath.Join(dst, name), b, 0o640); err != nil {
				return fmt.Errorf("demo: %w", err)
			}
		}
	}
	return nil
}

// describeDemoPeople says, for the banner, whose photos are enrolled and
// which one walks through the gate (walked: label → file, from the truth).
func describeDemoPeople(walked map[string]string) []string {
	var out []string
	for _, p := range demoPeople() {
		w := walked[p.Label]
		if w == "" {
			out = append(out, p.Name+": enrolled, but not in the gate video")
			continue
		}
		if len(p.Photos) == 1 {
			out = append(out, fmt.Sprintf("%s: one photo only (%s): it is enrolled and the same photo walks through the gate, scaled, lit and blurred by the simulator", p.Name, p.Photos[0]))
			continue
		}
		var enrolled []string
		for _, f := range p.Photos {
			if f != w {
				enrolled = append(enrolled, f)
			}
		}
		out = append(out, fmt.Sprintf("%s: enrolled from %s; %s walks through the gate", p.Name, strings.Join(enrolled, ", "), w))
	}
	return out
}
