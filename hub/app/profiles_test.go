package app

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/diemdanh/diemdanh/hub/enrol"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
)

// TestVoteCapCoversEveryCandidate: the automatic templates' guard knows the
// vote cap of the hub's model and of every enrol.candidates entry (a
// custom candidate's from its profile file), so an admin's switch keeps
// the guard without a restart; a custom candidate without a profile is
// refused, naming its key.
func TestVoteCapCoversEveryCandidate(t *testing.T) {
	prof, err := filepath.Abs(filepath.Join("..", "enrol", "testdata", "school-sface.profile.json"))
	if err != nil {
		t.Fatal(err)
	}
	custom := &faceengine.CustomModel{
		Name: "school-sface", Version: "1", File: faceengine.SFace2021DecBQ.File.Name,
		SHA256: faceengine.SFace2021DecBQ.File.SHA256, Input: []int{112, 112}, Layout: "NCHW", RGB: true,
		Mean: faceengine.CustomMean{0}, Scale: 1, Align: faceengine.CustomAlign{Template: faceengine.AlignArcFace112},
		Dim: 128, Flip: true, Profile: prof,
	}
	c := enrol.DefaultConfig()
	c.Candidates = []enrol.Candidate{{Embedder: match.DlibResNetV1.Name}, {Embedder: faceengine.CustomEmbedder, Custom: custom}}
	profiles, err := modelProfiles(c)
	if err != nil {
		t.Fatal(err)
	}
	want, err := faceengine.EngineConfig{Embedder: faceengine.CustomEmbedder, Custom: custom}.Profiles("x")
	if err != nil {
		t.Fatal(err)
	}
	wantCustom, _ := want.Of(custom.ModelID())
	cases := []struct {
		model match.ModelID
		cap   float64
		ok    bool
	}{
		{faceengine.SFace2021DecBQ.Model, faceengine.DistanceProfiles[faceengine.SFace2021DecBQ.Model.Name].VoteCap, true},
		{match.DlibResNetV1, faceengine.DistanceProfiles[match.DlibResNetV1.Name].VoteCap, true},
		{custom.ModelID(), wantCustom.VoteCap, true},
		{match.ModelID{Name: "unmeasured", Version: "1"}, 0, false},
	}
	cap := voteCap(profiles)
	for _, tc := range cases {
		got, ok := cap(tc.model)
		if ok != tc.ok || got != tc.cap || (tc.ok && got <= 0) {
			t.Errorf("%s: cap %v %v, want %v %v", tc.model, got, ok, tc.cap, tc.ok)
		}
	}
	bare := *custom
	bare.Profile = ""
	c.Candidates[1].Custom = &bare
	_, err = modelProfiles(c)
	var fe *conf.FieldError
	if !errors.As(err, &fe) || fe.Field != "enrol.candidates[1].custom.profile" {
		t.Fatalf("custom candidate without a profile: %v, want a FieldError on enrol.candidates[1].custom.profile", err)
	}
}
