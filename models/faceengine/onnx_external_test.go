//go:build extmodels

// Tests for models our CI cannot download (OpenCV Zoo's SFace, the Taguchi
// dlib model). Run them on a machine that has the files:
//
//	EXT_MODELS_DIR=/path go test -tags extmodels -run External ./models/faceengine/
//
// EXT_MODELS_DIR holds face_recognition_sface_2021dec.onnx and a folder
// taguchi/ with go-face's three file names, the Taguchi model saved as
// dlib_face_recognition_resnet_model_v1.dat; TAGUCHI_SHA256 is its checksum
// as you verified it. A missing file fails; nothing is skipped.
package faceengine

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	face "github.com/Kagami/go-face"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/match"
)

func extDir(t *testing.T) string {
	t.Helper()
	d := os.Getenv("EXT_MODELS_DIR")
	if d == "" {
		t.Fatal("EXT_MODELS_DIR is not set")
	}
	return d
}

// separates checks that two photos of one person are nearer than photos
// of different people, with descriptors from describe.
func separates(t *testing.T, describe func(name string) match.Descriptor) {
	t.Helper()
	a, a2 := describe("chaeyoung.jpg"), describe("chaeyoung2.jpg")
	j, j2 := describe("jimin.jpg"), describe("jimin2.jpg")
	same := max(match.Distance(a, a2), match.Distance(j, j2))
	for _, d := range []float64{match.Distance(a, j), match.Distance(a, j2), match.Distance(a2, j), match.Distance(a2, j2)} {
		if d <= same {
			t.Errorf("impostor %.3f not above genuine %.3f", d, same)
		}
	}
}

func TestExternalSFace(t *testing.T) {
	dir := t.TempDir()
	for _, f := range DlibModels {
		if err := os.Symlink(filepath.Join(conf.TestModelsDir(), f.Name), filepath.Join(dir, f.Name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(extDir(t), SFace2021Dec.File.Name), filepath.Join(dir, SFace2021Dec.File.Name)); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultEngineConfig()
	cfg.ModelsDir, cfg.Workers, cfg.Embedder = dir, 1, SFace2021Dec.Model.Name
	e, err := NewEngine(cfg, nil)
	if err != nil {
		t.Fatalf("SFace engine: %v", err)
	}
	defer e.Close()
	separates(t, func(name string) match.Descriptor {
		faces, err := e.RecognizeJPEG(context.Background(), readImage(t, name))
		if err != nil || len(faces) != 1 || len(faces[0].Descriptor) != 128 {
			t.Fatalf("%s: %d faces, %v", name, len(faces), err)
		}
		return faces[0].Descriptor
	})
}

func TestExternalTaguchi(t *testing.T) {
	dir := filepath.Join(extDir(t), "taguchi")
	want := os.Getenv("TAGUCHI_SHA256")
	if len(want) != 64 {
		t.Fatal("TAGUCHI_SHA256 must hold the checksum of the Taguchi model you verified")
	}
	files := []ModelFile{DlibModels[0], {"dlib_face_recognition_resnet_model_v1.dat", want}, DlibModels[2]}
	if err := VerifyModels(dir, files); err != nil {
		t.Fatal(err)
	}
	rec, err := face.NewRecognizer(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	separates(t, func(name string) match.Descriptor {
		f, err := rec.RecognizeSingle(readImage(t, name))
		if err != nil || f == nil {
			t.Fatalf("%s: %v %v", name, f, err)
		}
		return append(match.Descriptor(nil), f.Descriptor[:]...)
	})
}
