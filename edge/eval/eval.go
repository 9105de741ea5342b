// Package eval is the recognition evaluation harness behind `bin/edge eval`.
// It runs the gate's own detect → align → embed path (faceengine.Engine, with
// RecognizeTight so tight ID-photo crops work) over a labelled folder, or
// reads a descriptor file like go-face's idols.json, and reports
// failure-to-enrol, genuine and impostor distance distributions, FAR/FRR
// per threshold, EER, TAR at FAR 1e-3 and 1e-4, closed-set rank-1 by
// leave-one-out, and open-set visitor acceptance by leave-one-identity-out
// at the calibrated operating threshold (match.CalibrateThreshold) and at
// the threshold that gives 95% single-image genuine acceptance.
package eval

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/errkind"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
)

// Config is what the command line sets.
type Config struct {
	Input     string
	Embedder  string
	ModelsDir string
	Workers   int
	JSON      bool
	Plot      string
	TargetFAR float64 // visitor FAR the calibrated threshold aims at
	Margin    float64
	Label     string // auto | dir | stem
	PerID     int    // at most this many images per identity (0 = all)
	MaxIDs    int    // at most this many identities, in name order (0 = all)
	// ONNX tuning (evaluation only): override the registered spec.
	ONNX *faceengine.ONNXSpec
	// Engine is the engine section of --config (a custom model); nil:
	// the default engine with Embedder.
	Engine *faceengine.EngineConfig
}

// Validate names the first bad flag.
func (c Config) Validate() error {
	switch {
	case c.Input == "":
		return conf.Fieldf("input", "a labelled folder or a descriptor .json file is required")
	case !(c.TargetFAR > 0 && c.TargetFAR < 1):
		return conf.Fieldf("target-far", "must be in (0,1), got %g", c.TargetFAR)
	case c.Margin < 0:
		return conf.Fieldf("margin", "must not be negative")
	case c.Label != "auto" && c.Label != "dir" && c.Label != "stem":
		return conf.Fieldf("label", "must be auto, dir or stem, got %q", c.Label)
	case c.PerID < 0 || c.MaxIDs < 0 || c.Workers < 0:
		return conf.Fieldf("per-id", "counts must not be negative")
	}
	if c.Engine != nil {
		if err := c.Engine.Validate("engine"); err != nil {
			return fmt.Errorf("config: %w", err)
		}
		return nil
	}
	if _, ok := faceengine.EmbedderModel(c.Embedder); !ok && c.ONNX == nil {
		return conf.Fieldf("embedder", "unknown %q (one of %v)", c.Embedder, faceengine.EmbedderNames())
	}
	return nil
}

// Dist summarises a distance distribution.
type Dist struct {
	Pairs  int     `json:"pairs"`
	Mean   float64 `json:"mean"`
	P01    float64 `json:"p01"`
	P05    float64 `json:"p05"`
	Median float64 `json:"median"`
	P95    float64 `json:"p95"`
	P99    float64 `json:"p99"`
}

func summarise(sorted []float64) Dist {
	d := Dist{Pairs: len(sorted)}
	if len(sorted) == 0 {
		return d
	}
	q := func(p float64) float64 { return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))] }
	for _, v := range sorted {
		d.Mean += v
	}
	d.Mean /= float64(len(sorted))
	d.P01, d.P05, d.Median, d.P95, d.P99 = q(0.01), q(0.05), q(0.5), q(0.95), q(0.99)
	return d
}

// TAR is the genuine accept rate at a pair FAR.
type TAR struct {
	FAR       float64 `json:"far"`
	TAR       Num     `json:"tar"`
	Threshold Num     `json:"threshold"`
}

// CurvePoint is FAR and FRR at one threshold.
type CurvePoint struct {
	Threshold float64 `json:"threshold"`
	FAR       Num     `json:"far"`
	FRR       Num     `json:"frr"`
}

// Report is the harness's output (the --json object).
type Report struct {
	Input      string        `json:"input"`
	Embedder   match.ModelID `json:"embedder"`
	Images     int           `json:"images"`
	Identities int           `json:"identities"`
	FTE        Rate          `json:"failure_to_enrol"`
	FTEFiles   []string      `json:"fte_files,omitempty"`
	MultiFace  int           `json:"multi_face_images"` // the largest face was used
	// Duplicates are samples whose descriptor equals an earlier one (the
	// same photo twice, e.g. in kpop's train and validation folders, or
	// under two identities in idols.json); they are left out, since a
	// probe finding its own copy would inflate every figure.
	Duplicates  []string          `json:"duplicates_dropped,omitempty"`
	Genuine     Dist              `json:"genuine"`
	Impostor    Dist              `json:"impostor"`
	EER         Num               `json:"eer"`
	EERThresh   Num               `json:"eer_threshold"`
	TARAtFAR    []TAR             `json:"tar_at_far"`
	Rank1       Rate              `json:"rank1_loo"`
	Calibration match.Calibration `json:"calibration"`
	// Open-set outcomes at three operating points: the calibrated one, the
	// one with 95% single-image genuine acceptance (NaN threshold when
	// rank-1 is under 95%), and the one with 1% visitor acceptance.
	AtCalibrated OpenSet      `json:"at_calibrated"`
	AtGenuine95  OpenSet      `json:"at_genuine_95"`
	AtVisitor1   OpenSet      `json:"at_visitor_1pct"`
	Curve        []CurvePoint `json:"far_frr"`
	Seconds      float64      `json:"seconds"`
	MsPerImage   float64      `json:"ms_per_image"`

	pairs Pairs
}

// Run loads the input, computes the descriptors and every figure.
func Run(ctx context.Context, c Config, logw io.Writer) (*Report, error) {
	start := time.Now()
	model, _ := c.engineConfig().Model()
	rep := &Report{Input: c.Input, Embedder: model}
	var samples []Sample
	if strings.HasSuffix(strings.ToLower(c.Input), ".json") {
		if model != match.DlibResNetV1 {
			return nil, conf.Fieldf("embedder", "a descriptor file holds dlib-resnet-v1 descriptors; %s cannot be measured on it", model)
		}
		var err error
		if samples, err = loadDescriptors(c); err != nil {
			return nil, err
		}
		rep.Images = len(samples)
		rep.FTE = rate(0, len(samples))
	} else {
		items, err := ListLabelled(c.Input, c.Label)
		if err != nil {
			return nil, err
		}
		items = subset(items, c.PerID, c.MaxIDs)
		if len(items) == 0 {
			return nil, conf.Fieldf("input", "no .jpg/.png/.bmp images under %s", c.Input)
		}
		if samples, err = describe(ctx, c, items, rep, logw); err != nil {
			return nil, err
		}
	}
	samples, rep.Duplicates = dedupe(samples)
	if len(samples) < 2 {
		return nil, conf.Fieldf("input", "%d usable samples; need at least 2", len(samples))
	}
	ids := map[string]bool{}
	for _, s := range samples {
		ids[s.Identity] = true
	}
	rep.Identities = len(ids)
	pairs, probes := Analyse(samples)
	rep.pairs = pairs
	rep.Genuine, rep.Impostor = summarise(pairs.Genuine), summarise(pairs.Impostor)
	eer, eerT := pairs.EER()
	rep.EER, rep.EERThresh = Num(eer), Num(eerT)
	for _, far := range []float64{1e-3, 1e-4} {
		tar, th := pairs.TARAtFAR(far)
		rep.TARAtFAR = append(rep.TARAtFAR, TAR{FAR: far, TAR: Num(tar), Threshold: Num(th)})
	}
	rep.Rank1 = Rank1(probes)
	g := match.NewGallery(1, model)
	for _, s := range samples {
		if err := g.Add(s.Identity, s.Desc); err != nil {
			return nil, err
		}
	}
	if len(ids) >= 2 {
		cal, err := match.CalibrateThreshold(g, c.TargetFAR)
		if err != nil {
			return nil, err
		}
		rep.Calibration = cal
		rep.AtCalibrated = OpenSetAt(probes, cal.Threshold, c.Margin)
	}
	rep.AtGenuine95 = OpenSetAt(probes, ThresholdForGenuine(probes, 0.95, c.Margin), c.Margin)
	rep.AtVisitor1 = OpenSetAt(probes, ThresholdForVisitor(probes, 0.01), 0)
	hi := 0.0
	if n := len(pairs.Impostor); n > 0 {
		hi = pairs.Impostor[n-1]
	}
	for t := 0.0; t <= hi+0.0001; t += 0.01 {
		rep.Curve = append(rep.Curve, CurvePoint{Threshold: round(t, 2), FAR: Num(pairs.FAR(t)), FRR: Num(pairs.FRR(t))})
	}
	rep.Seconds = round(time.Since(start).Seconds(), 2)
	if rep.Images > 0 {
		rep.MsPerImage = round(1000*time.Since(start).Seconds()/float64(rep.Images), 1)
	}
	return rep, nil
}

// dedupe drops samples whose descriptor is identical to an earlier one.
func dedupe(in []Sample) ([]Sample, []string) {
	var out []Sample
	var dropped []string
	for _, s := range in {
		dup := false
		for _, o := range out {
			if match.SquaredL2(s.Desc, o.Desc) < 1e-12 {
				dup = true
				dropped = append(dropped, s.Source+" = "+o.Source)
				break
			}
		}
		if !dup {
			out = append(out, s)
		}
	}
	return out, dropped
}

func round(v float64, d int) float64 {
	p := math.Pow(10, float64(d))
	return math.Round(v*p) / p
}

// Item is one labelled image file.
type Item struct{ Identity, Path string }

// ListLabelled lists DIR/<identity>/*.{jpg,jpeg,png,bmp} at any depth
// (identity = the folder holding the file, so kpop's train/X and
// validation/X merge), or with label "stem" files named like jimin2.jpg
// (identity = the name without trailing digits). "auto" picks stem when
// every image sits directly in DIR.
func ListLabelled(dir, label string) ([]Item, error) {
	var items []Item
	flat := true
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		switch strings.ToLower(filepath.Ext(p)) {
		case ".jpg", ".jpeg", ".png", ".bmp":
		default:
			return nil
		}
		if filepath.Dir(p) != filepath.Clean(dir) {
			flat = false
		}
		items = append(items, Item{Path: p})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("eval: %w", err)
	}
	stem := label == "stem" || (label == "auto" && flat)
	for i := range items {
		if stem {
			base := strings.TrimSuffix(filepath.Base(items[i].Path), filepath.Ext(items[i].Path))
			items[i].Identity = strings.TrimRightFunc(base, unicode.IsDigit)
		} else {
			items[i].Identity = filepath.Base(filepath.Dir(items[i].Path))
		}
	}
	sort.Slice(items, func(a, b int) bool {
		if items[a].Identity != items[b].Identity {
			return items[a].Identity < items[b].Identity
		}
		return items[a].Path < items[b].Path
	})
	return items, nil
}

func subset(items []Item, perID, maxIDs int) []Item {
	var out []Item
	count := map[string]int{}
	for _, it := range items {
		if _, seen := count[it.Identity]; !seen && maxIDs > 0 && len(count) >= maxIDs {
			continue
		}
		if perID > 0 && count[it.Identity] >= perID {
			continue
		}
		count[it.Identity]++
		out = append(out, it)
	}
	return out
}

func loadDescriptors(c Config) ([]Sample, error) {
	d, err := match.LoadIdols(c.Input)
	if err != nil {
		return nil, err
	}
	ids, descs, err := d.Labelled()
	if err != nil {
		return nil, err
	}
	var items []Item
	for i := range ids {
		items = append(items, Item{Identity: ids[i], Path: fmt.Sprint(i)})
	}
	sort.SliceStable(items, func(a, b int) bool { return items[a].Identity < items[b].Identity })
	items = subset(items, c.PerID, c.MaxIDs)
	out := make([]Sample, 0, len(items))
	for _, it := range items {
		var k int
		fmt.Sscan(it.Path, &k)
		out = append(out, Sample{Identity: it.Identity, Source: "descriptor#" + it.Path, Desc: descs[k]})
	}
	return out, nil
}

func describe(ctx context.Context, c Config, items []Item, rep *Report, logw io.Writer) ([]Sample, error) {
	ec := c.engineConfig()
	eng, err := faceengine.NewEngine(ec, nil)
	if err != nil {
		return nil, err
	}
	defer eng.Close()
	return describeWith(ctx, eng, ec.Workers, items, rep, logw)
}

// describeWith computes the descriptors of items with eng on workers
// goroutines; rep gets the image, failure-to-enrol and several-faces
// counts.
func describeWith(ctx context.Context, eng *faceengine.Engine, workers int, items []Item, rep *Report, logw io.Writer) ([]Sample, error) {
	rep.Images = len(items)
	out := make([]*Sample, len(items))
	multi := make([]bool, len(items))
	errs := make([]error, len(items))
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				out[i], multi[i], errs[i] = describeOne(ctx, eng, items[i])
			}
		}()
	}
	for i := range items {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var samples []Sample
	fte := 0
	for i, s := range out {
		if errs[i] != nil {
			var ge *errkind.Error
			if !errors.As(errs[i], &ge) || ge.Kind == errkind.ModelMissing || ge.Kind == errkind.ModelCorrupt || ge.Kind == errkind.Closed {
				return nil, fmt.Errorf("eval: %s: %w", items[i].Path, errs[i])
			}
			fmt.Fprintf(logw, "eval: %s: %v (counted as failure to enrol)\n", items[i].Path, errs[i])
		}
		if s == nil {
			fte++
			rep.FTEFiles = append(rep.FTEFiles, items[i].Path)
			continue
		}
		if multi[i] {
			rep.MultiFace++
		}
		samples = append(samples, *s)
	}
	rep.FTE = rate(fte, len(items))
	return samples, nil
}

// describeOne returns the descriptor of the largest face, or nil when the
// engine finds none (a failure to enrol).
func describeOne(ctx context.Context, eng *faceengine.Engine, it Item) (*Sample, bool, error) {
	b, err := os.ReadFile(it.Path)
	if err != nil {
		return nil, false, err
	}
	m, _, err := faceengine.DecodeMat(b, eng.Limits())
	if err != nil {
		return nil, false, err
	}
	defer m.Close()
	faces, err := eng.RecognizeTight(ctx, m)
	if err != nil || len(faces) == 0 {
		return nil, false, err
	}
	best := 0
	for i, f := range faces {
		if f.Box.Dx()*f.Box.Dy() > faces[best].Box.Dx()*faces[best].Box.Dy() {
			best = i
		}
	}
	return &Sample{Identity: it.Identity, Source: it.Path, Desc: faces[best].Descriptor}, len(faces) > 1, nil
}

// WriteText prints the report for people.
func (r *Report) WriteText(w io.Writer) {
	pct := func(x Rate) string {
		return fmt.Sprintf("%.2f%% (%d/%d)", 100*x.Rate, x.Count, x.Total)
	}
	fmt.Fprintf(w, "embedder            %s\n", r.Embedder)
	fmt.Fprintf(w, "input               %s: %d images, %d identities, %.1fs (%.1f ms/image)\n", r.Input, r.Images, r.Identities, r.Seconds, r.MsPerImage)
	fmt.Fprintf(w, "failure to enrol    %s", pct(r.FTE))
	if r.MultiFace > 0 {
		fmt.Fprintf(w, "; %d images with several faces (largest used)", r.MultiFace)
	}
	if len(r.Duplicates) > 0 {
		fmt.Fprintf(w, "; %d exact duplicates left out", len(r.Duplicates))
	}
	fmt.Fprintln(w)
	for _, d := range []struct {
		name string
		d    Dist
	}{{"genuine", r.Genuine}, {"impostor", r.Impostor}} {
		fmt.Fprintf(w, "%-19s %d pairs: p01 %.3f  p05 %.3f  median %.3f  p95 %.3f  p99 %.3f  mean %.3f\n",
			d.name, d.d.Pairs, d.d.P01, d.d.P05, d.d.Median, d.d.P95, d.d.P99, d.d.Mean)
	}
	fmt.Fprintf(w, "EER                 %.2f%% at %.3f\n", 100*r.EER, r.EERThresh)
	for _, t := range r.TARAtFAR {
		fmt.Fprintf(w, "TAR @ FAR %-9g %.2f%% (threshold %.3f)\n", t.FAR, 100*t.TAR, t.Threshold)
	}
	fmt.Fprintf(w, "rank-1 (LOO)        %s\n", pct(r.Rank1))
	c := r.Calibration
	fmt.Fprintf(w, "calibrated          threshold %.3f for visitor FAR %g over %d identities (per identity %.2g, %s, %d scores); expected FAR %.3g, FRR %.3g\n",
		c.Threshold, c.TargetFAR, c.Identities, c.PerIdentityFAR, c.Method, c.ImpostorScores, c.ExpectedFAR, c.ExpectedFRR)
	for _, o := range []struct {
		name string
		o    OpenSet
	}{{"at calibrated", r.AtCalibrated}, {"at genuine 95%", r.AtGenuine95}, {"at visitor 1%", r.AtVisitor1}} {
		fmt.Fprintf(w, "%-19s t=%.3f m=%.2f: genuine accept %s, wrong accept %s, visitor accept %s\n",
			o.name, o.o.Threshold, o.o.Margin, pct(o.o.GenuineAccept), pct(o.o.WrongAccept), pct(o.o.VisitorAccept))
	}
	fmt.Fprintln(w, "threshold   FAR        FRR")
	for _, p := range r.Curve {
		if int(math.Round(p.Threshold*100))%5 != 0 || p.FAR < 1e-5 && p.FRR > 0.999 || p.FAR > 0.999 {
			continue
		}
		fmt.Fprintf(w, "%.2f        %-10.4g %-10.4g\n", p.Threshold, p.FAR, p.FRR)
	}
}
