package app

import (
	"context"
	"encoding/json"
	"fmt"
	"image"
	"io"
	"math"
	"os"

	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// IdentifyResult is one face found by `edge identify`.
type IdentifyResult struct {
	Image     string          `json:"image"`
	Box       image.Rectangle `json:"box"`
	StudentID string          `json:"student_id"` // or "unknown"
	Nearest   string          `json:"nearest,omitempty"`
	Distance  float64         `json:"distance"`
	Margin    float64         `json:"margin"`
	Threshold float64         `json:"threshold"`
	MinMargin float64         `json:"min_margin"`
	Quality   match.Quality   `json:"quality"`
	// Why explains "unknown" and quality problems in plain words.
	Why []string `json:"why,omitempty"`
	// Error is set (with no face fields) when the image could not be read.
	Error string `json:"error,omitempty"`
}

func finiteOr(v, d float64) float64 {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return d
	}
	return v
}

func cmdIdentify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("identify", stderr)
	galPath := fs.String("gallery", "", "gallery file")
	config := fs.String("config", "", "edge config file (engine and vote settings; optional)")
	threshold := fs.Float64("threshold", 0, "distance threshold (default: gallery's calibrated value, else calibrated here, capped by the config's vote.threshold or the embedder's vote cap)")
	margin := fs.Float64("margin", -1, "minimum margin over the second-best identity (default as for --threshold)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *galPath == "" || fs.NArg() == 0 {
		return usageErr("identify needs --gallery FILE and at least one IMAGE")
	}
	ec, cfg, err := engineConfig(*config)
	if err != nil {
		return err
	}
	doc, gal, err := wire.LoadGalleryFile(*galPath)
	if err != nil {
		return fmt.Errorf("gallery %s: %w", *galPath, err)
	}
	// The gate's rule (pipeline.VoteConfig.InForce): the gallery's
	// calibrated threshold, else one calibrated here from the gallery,
	// capped by vote.threshold or the embedder's vote cap.
	var cal float64
	if doc.Threshold <= 0 && cfg.Pipeline.CalibrateFAR > 0 {
		if c, err := match.CalibrateThreshold(gal, cfg.Pipeline.CalibrateFAR); err == nil {
			cal = c.Threshold
		}
	}
	th, mm := cfg.Pipeline.Vote.InForce(gal.Model, doc.Threshold, cal), cfg.Pipeline.Vote.MinMargin
	if doc.MinMargin > 0 {
		mm = doc.MinMargin
	}
	if *threshold > 0 {
		th = *threshold
	}
	if *margin >= 0 {
		mm = *margin
	}
	eng, err := faceengine.NewEngine(ec, nil)
	if err != nil {
		return fmt.Errorf("face engine: %w", err)
	}
	defer eng.Close()
	if gal.Model != eng.Model() {
		return fmt.Errorf("gallery %s was made by %s; this engine is %s", *galPath, gal.Model, eng.Model())
	}
	enc := json.NewEncoder(stdout)
	policy := cfg.Pipeline.VoteQuality
	failed := 0
	for _, p := range fs.Args() {
		res, err := identifyImage(ctx, eng, gal, p, th, mm, policy)
		if err != nil {
			failed++
			_ = enc.Encode(IdentifyResult{Image: p, Error: err.Error()})
			continue
		}
		if len(res) == 0 {
			_ = enc.Encode(IdentifyResult{Image: p, StudentID: wire.UnknownStudent, Why: []string{match.Reason(match.ReasonNoFace).EN}})
		}
		for _, r := range res {
			_ = enc.Encode(r)
		}
	}
	if failed > 0 {
		return fmt.Errorf("identify: %d of %d images could not be read", failed, fs.NArg())
	}
	return nil
}

func identifyImage(ctx context.Context, eng *faceengine.Engine, gal *match.Gallery, path string, th, mm float64, policy match.QualityPolicy) ([]IdentifyResult, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m, _, err := faceengine.DecodeMat(b, eng.Limits())
	if err != nil {
		return nil, err
	}
	defer m.Close()
	faces, err := eng.RecognizeTight(ctx, m)
	if err != nil {
		return nil, err
	}
	var out []IdentifyResult
	for _, f := range faces {
		mt := gal.Match(f.Descriptor)
		r := IdentifyResult{Image: path, Box: f.Box, StudentID: wire.UnknownStudent, Nearest: mt.PersonID,
			Distance: finiteOr(mt.Distance, -1), Margin: finiteOr(mt.Margin(), -1), Threshold: th, MinMargin: mm, Quality: f.Quality}
		switch {
		case mt.PersonID == "":
			r.Why = append(r.Why, "the gallery is empty")
		case mt.Distance > th:
			r.Why = append(r.Why, fmt.Sprintf("nearest pupil is at distance %.3f, above the threshold %.3f", mt.Distance, th))
		case mt.Margin() < mm:
			r.Why = append(r.Why, fmt.Sprintf("pupils %s and %s are both close (margin %.3f under %.3f)", mt.PersonID, mt.SecondPersonID, mt.Margin(), mm))
		default:
			r.StudentID = mt.PersonID
		}
		for _, q := range policy.CheckQuality(f.Quality) {
			r.Why = append(r.Why, q.EN)
		}
		out = append(out, r)
	}
	return out, nil
}
