package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// PhotoReport is one photo's outcome in `gallery build`.
type PhotoReport struct {
	Photo     string                `json:"photo"`
	StudentID string                `json:"student_id"`
	OK        bool                  `json:"ok"`
	Reasons   []match.QualityReason `json:"reasons,omitempty"`
	Quality   *match.Quality        `json:"quality,omitempty"`
}

// BuildGallery enrols every person folder under dir (DIR/<student_id>/*)
// with the shared quality policy; rejected photos are reported, never
// silently dropped.
func BuildGallery(ctx context.Context, eng *faceengine.Engine, dir, school string, version int64, policy match.QualityPolicy, maxPer int) (*wire.GalleryDoc, []PhotoReport, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("photos: %w", err)
	}
	g := match.NewGallery(version, eng.Model())
	var reps []PhotoReport
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		id := e.Name()
		files, err := os.ReadDir(filepath.Join(dir, id))
		if err != nil {
			return nil, nil, fmt.Errorf("photos: %w", err)
		}
		var names []string
		for _, f := range files {
			if !f.IsDir() && isImage(f.Name()) {
				names = append(names, f.Name())
			}
		}
		sort.Strings(names)
		if !wire.ValidPersonalID(id) {
			for _, n := range names {
				reps = append(reps, PhotoReport{Photo: filepath.Join(dir, id, n), StudentID: id,
					Reasons: []match.QualityReason{{Code: "bad_student_id", EN: "the folder name is not a 12-digit personal ID",
						VI: "tên thư mục không phải mã định danh cá nhân 12 chữ số"}}})
			}
			continue
		}
		added := 0
		for _, n := range names {
			if err := ctx.Err(); err != nil {
				return nil, nil, err
			}
			p := filepath.Join(dir, id, n)
			rep := PhotoReport{Photo: p, StudentID: id}
			face, verdict := enrolPhoto(ctx, eng, p, policy)
			if face != nil {
				q := face.Quality
				rep.Quality = &q
			}
			switch {
			case !verdict.OK:
				rep.Reasons = verdict.Reasons
			case added >= maxPer:
				rep.Reasons = []match.QualityReason{{Code: "too_many", EN: fmt.Sprintf("already %d photos for this pupil", maxPer),
					VI: fmt.Sprintf("đã đủ %d ảnh cho học sinh này", maxPer)}}
			default:
				if err := g.Add(id, face.Descriptor); err != nil {
					return nil, nil, err
				}
				rep.OK = true
				added++
			}
			reps = append(reps, rep)
		}
	}
	return wire.DocFromGallery(school, g), reps, nil
}

func enrolPhoto(ctx context.Context, eng *faceengine.Engine, path string, policy match.QualityPolicy) (*match.Face, match.QualityVerdict) {
	unreadable := match.QualityVerdict{Face: -1, Reasons: []match.QualityReason{match.Reason(match.ReasonUnreadable)}}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, unreadable
	}
	m, _, err := faceengine.DecodeMat(b, eng.Limits())
	if err != nil {
		return nil, unreadable
	}
	defer m.Close()
	faces, err := eng.RecognizeTight(ctx, m)
	if err != nil {
		return nil, unreadable
	}
	v := policy.Check(faces)
	if v.Face >= 0 {
		return &faces[v.Face], v
	}
	return nil, v
}

func cmdGalleryBuild(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("gallery build", stderr)
	photos := fs.String("photos", "", "folder with one sub-folder per pupil: DIR/<student_id>/*.jpg|png")
	out := fs.String("out", "", "gallery file to write")
	school := fs.String("school", "", "school ID recorded in the gallery (optional)")
	version := fs.Int64("version", 0, "gallery version (default: the current Unix time)")
	maxPer := fs.Int("max-per-person", 8, "descriptors kept per pupil (1..32)")
	asJSON := fs.Bool("json", false, "print one JSON line per photo instead of text")
	config := fs.String("config", "", "edge config file (engine settings; optional)")
	minFace := fs.Int("min-face", -1, "override the policy's minimum face width in pixels")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *photos == "" || *out == "" {
		return usageErr("gallery build needs --photos DIR and --out FILE")
	}
	if *maxPer < 1 || *maxPer > wire.MaxDescriptorsPerPerson {
		return usageErr("--max-per-person must be 1..%d", wire.MaxDescriptorsPerPerson)
	}
	if *school != "" && !wire.ValidID(*school) {
		return usageErr("--school %q is not a valid school ID", *school)
	}
	if *version == 0 {
		*version = time.Now().Unix()
	}
	ec, _, err := engineConfig(*config)
	if err != nil {
		return err
	}
	eng, err := faceengine.NewEngine(ec, nil)
	if err != nil {
		return fmt.Errorf("face engine: %w", err)
	}
	defer eng.Close()
	policy := match.DefaultQualityPolicy()
	if *minFace >= 0 {
		policy.MinFacePx = *minFace
	}
	doc, reps, err := BuildGallery(ctx, eng, *photos, *school, *version, policy, *maxPer)
	if err != nil {
		return err
	}
	ok, rejected := 0, 0
	enc := json.NewEncoder(stdout)
	for _, r := range reps {
		if r.OK {
			ok++
		} else {
			rejected++
		}
		switch {
		case *asJSON:
			_ = enc.Encode(r)
		case !r.OK:
			for _, why := range r.Reasons {
				fmt.Fprintf(stdout, "rejected %s: %s (%s)\n", r.Photo, why.EN, why.VI)
			}
		}
	}
	if len(doc.People) == 0 {
		return fmt.Errorf("gallery build: no photo passed the quality gates (%d rejected)", rejected)
	}
	b, err := doc.Encode()
	if err != nil {
		return err
	}
	if err := conf.WriteFileAtomic(*out, b, 0o640); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "gallery %s: %d people, %d photos enrolled, %d rejected, version %d\n", *out, len(doc.People), ok, rejected, doc.Version)
	return nil
}
