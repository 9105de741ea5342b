package faceengine

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/errkind"
)

// ModelFile is one weight file the engine needs, with its pinned checksum.
// The list must equal models/SHA256SUMS (a test checks it).
type ModelFile struct {
	Name   string
	SHA256 string
}

// DlibModels are the files go-face loads from one folder.
var DlibModels = []ModelFile{
	{"shape_predictor_5_face_landmarks.dat", "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888"},
	{"dlib_face_recognition_resnet_model_v1.dat", "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"},
	{"mmod_human_face_detector.dat", "4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6"},
}

var verified sync.Map // path+size+mtime -> bool, so a process hashes each file once

// VerifyModels checks that every file exists in dir with its pinned
// checksum. A missing file is errkind.ModelMissing; a wrong one errkind.ModelCorrupt.
func VerifyModels(dir string, files []ModelFile) error {
	for _, f := range files {
		p := filepath.Join(dir, f.Name)
		st, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return errkind.New(errkind.ModelMissing, "models", err, "%s not found in %s (run `make models` or set MODELS_DIR)", f.Name, dir)
		}
		if err != nil {
			return errkind.New(errkind.ModelMissing, "models", err, "%s", p)
		}
		key := fmt.Sprintf("%s|%d|%d", p, st.ModTime().UnixNano(), st.Size())
		if _, ok := verified.Load(key); ok {
			continue
		}
		got, err := conf.FileSHA256(p)
		if err != nil {
			return errkind.New(errkind.ModelMissing, "models", err, "%s", p)
		}
		if got != f.SHA256 {
			return errkind.New(errkind.ModelCorrupt, "models", nil, "%s has sha256 %s, want %s", p, got, f.SHA256)
		}
		verified.Store(key, true)
	}
	return nil
}
