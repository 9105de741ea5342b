package sim

import (
	"context"
	"fmt"
	"image"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"unicode"

	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
	"gocv.io/x/gocv"
)

// photo is one source image of a person.
type photo struct {
	Path   string // on disk
	Rel    string // as written to the truth file (relative to the source's parent)
	Person string // person key, unique across sources
	Name   string // normalised name used to find the same person in two sources
	Source int    // index of the --photos folder
}

// analysed is a photo with its one face found by the engine.
type analysed struct {
	photo
	Box image.Rectangle // in the original image's coordinates (may extend past its edges)
	// Ref is the face's faceengine.ReferenceModel (dlib-resnet-v1) descriptor:
	// every selection decision uses it, so the people and photos chosen do
	// not depend on the embedder under test.
	Ref match.Descriptor
	// Desc is the requested embedder's descriptor, used only for the
	// gallery; nil if that embedder could not describe the face.
	Desc   match.Descriptor
	Sprite gocv.Mat        // face-centred tile, face scaled to spriteFace px wide
	Face   image.Rectangle // face box within Sprite
}

func isImage(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".jpg", ".jpeg", ".png", ".bmp":
		return true
	}
	return false
}

// collect lists the photos of every folder. In a folder whose images sit
// directly inside it (or inside its images/ subfolder, like go-face's
// faces/images) a person is the file name without trailing digits
// (bona.jpg, bona2.jpg → bona); elsewhere a person is the image's parent
// folder (kpop/train/Irene/*.jpg, casia-facev5/007/*.bmp).
func collect(dirs []string) ([]photo, error) {
	var out []photo
	for si, dir := range dirs {
		dir = filepath.Clean(dir)
		st, err := os.Stat(dir)
		if err != nil {
			return nil, fmt.Errorf("photos: %w", err)
		}
		if !st.IsDir() {
			return nil, fmt.Errorf("photos: %s is not a folder", dir)
		}
		flatRoot := dir
		if st, err := os.Stat(filepath.Join(dir, "images")); err == nil && st.IsDir() {
			flatRoot = filepath.Join(dir, "images")
		}
		parent := filepath.Dir(dir)
		n := 0
		err = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() || !isImage(d.Name()) {
				return nil
			}
			rel, _ := filepath.Rel(parent, p)
			ph := photo{Path: p, Rel: filepath.ToSlash(rel), Source: si}
			if filepath.Dir(p) == flatRoot {
				stem := strings.TrimSuffix(d.Name(), filepath.Ext(d.Name()))
				stem = strings.TrimRightFunc(stem, unicode.IsDigit)
				ph.Name = strings.ToLower(stem)
			} else {
				ph.Name = strings.ToLower(filepath.Base(filepath.Dir(p)))
			}
			if ph.Name == "" {
				return nil
			}
			ph.Person = fmt.Sprintf("%d:%s", si, ph.Name)
			out = append(out, ph)
			n++
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("photos: %w", err)
		}
		if n == 0 {
			return nil, fmt.Errorf("photos: no .jpg/.png/.bmp images under %s", dir)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// sameName reports whether two normalised names may be the same person
// (equal, or one edit apart for names of six letters or more: "chaeyong"
// and "chaeyoung", but not "nana" and "sana").
func sameName(a, b string) bool {
	if a == b {
		return true
	}
	if len(a) < 6 || len(b) < 6 || math.Abs(float64(len(a)-len(b))) > 1 {
		return false
	}
	return editDistance(a, b) <= 1
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// spriteFace is the face width sprites are stored at (the largest face
// drawn); rendering only scales down.
const spriteFace = 240

// analyse runs the engines on every photo (in parallel, results by index
// so the output does not depend on scheduling) and keeps those in which
// the reference engine finds exactly one face. ref computes the
// faceengine.ReferenceModel descriptor and may be eng itself; eng computes
// the gallery descriptor.
func analyse(ctx context.Context, eng, ref *faceengine.Engine, photos []photo, warn io.Writer) ([]*analysed, error) {
	res := make([]*analysed, len(photos))
	notes := make([]string, len(photos))
	errs := make([]error, len(photos))
	sem := make(chan struct{}, max(eng.Workers(), 1))
	var wg sync.WaitGroup
	for i := range photos {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			res[i], notes[i], errs[i] = analyseOne(ctx, eng, ref, photos[i])
		}(i)
	}
	wg.Wait()
	var out []*analysed
	for i, a := range res {
		if notes[i] != "" {
			fmt.Fprintf(warn, "simulate: %s: %s\n", photos[i].Rel, notes[i])
		}
		if errs[i] != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			fmt.Fprintf(warn, "simulate: skipping %s: %v\n", photos[i].Rel, errs[i])
			continue
		}
		out = append(out, a)
	}
	return out, nil
}

// analyseOne returns the photo's face with its sprite, or an error when
// the photo is not usable; note tells why the gallery lacks an otherwise
// usable face.
func analyseOne(ctx context.Context, eng, ref *faceengine.Engine, ph photo) (a *analysed, note string, err error) {
	m, err := loadPhoto(ph.Path)
	if err != nil {
		return nil, "", err
	}
	defer m.Close()
	a, note, err = describeFace(ctx, eng, ref, m, ph)
	if err != nil {
		return nil, note, err
	}
	a.Sprite, a.Face = makeSprite(m, a.Box)
	return a, note, nil
}

// loadPhoto reads a photo, scaled down so that its long side is at most
// 1280 px: the work on big photos is bounded the same way the engine
// bounds it. Face boxes are in the scaled photo's coordinates.
func loadPhoto(path string) (gocv.Mat, error) {
	m := gocv.IMRead(path, gocv.IMReadColor)
	if m.Empty() {
		m.Close()
		return m, fmt.Errorf("cannot decode")
	}
	if long := max(m.Cols(), m.Rows()); long > 1280 {
		scale := 1280 / float64(long)
		small := gocv.NewMat()
		gocv.Resize(m, &small, image.Pt(int(float64(m.Cols())*scale), int(float64(m.Rows())*scale)), 0, 0, gocv.InterpolationArea)
		m.Close()
		m = small
	}
	return m, nil
}

// describeFace finds the photo's one face on the reference engine and
// describes it with both engines (no sprite).
func describeFace(ctx context.Context, eng, ref *faceengine.Engine, m gocv.Mat, ph photo) (a *analysed, note string, err error) {
	// Which photos are usable is decided on the reference engine alone.
	faces, err := ref.RecognizeTight(ctx, m)
	if err != nil {
		return nil, "", err
	}
	if len(faces) != 1 {
		return nil, "", fmt.Errorf("%d faces found (need exactly 1)", len(faces))
	}
	f := faces[0]
	if f.Box.Dx() < 40 {
		return nil, "", fmt.Errorf("face only %d px wide", f.Box.Dx())
	}
	a = &analysed{photo: ph, Box: f.Box, Ref: f.Descriptor, Desc: f.Descriptor}
	if eng != ref {
		// The engine under test describes the same face (the one its own
		// detector's box overlaps most; with YuNet the box differs from
		// dlib's). A face it cannot describe stays in the selection (it
		// may still be walked) but is left out of the gallery.
		a.Desc = nil
		ef, err := eng.RecognizeTight(ctx, m)
		best, bestIoU := -1, 0.3
		for i := range ef {
			if v := faceengine.IoU(ef[i].Box, f.Box); v > bestIoU {
				best, bestIoU = i, v
			}
		}
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return nil, "", ctx.Err()
			}
			note = fmt.Sprintf("%s cannot describe the face (left out of the gallery): %v", eng.Model().Name, err)
		case best < 0:
			note = fmt.Sprintf("the %s engine found %d faces, none where the reference found one (left out of the gallery)", eng.Model().Name, len(ef))
		default:
			a.Desc = ef[best].Descriptor
		}
	}
	return a, note, nil
}

// makeSprite cuts a head-and-shoulders tile around box (padding with
// replicated borders where the photo is too tight) and scales it so the
// face is spriteFace px wide.
func makeSprite(m gocv.Mat, box image.Rectangle) (gocv.Mat, image.Rectangle) {
	w, h := box.Dx(), box.Dy()
	region := image.Rect(box.Min.X-w, box.Min.Y-h*8/10, box.Max.X+w, box.Max.Y+h*9/10)
	pad := max(0, -region.Min.X, -region.Min.Y, region.Max.X-m.Cols(), region.Max.Y-m.Rows())
	src := m
	if pad > 0 {
		padded := gocv.NewMat()
		defer padded.Close()
		gocv.CopyMakeBorder(m, &padded, pad, pad, pad, pad, gocv.BorderReplicate, faceengine.ColorBlack())
		src = padded
	}
	roi := src.Region(region.Add(image.Pt(pad, pad)))
	defer roi.Close()
	s := float64(spriteFace) / float64(w)
	out := gocv.NewMat()
	gocv.Resize(roi, &out, image.Pt(int(math.Round(float64(region.Dx())*s)), int(math.Round(float64(region.Dy())*s))), 0, 0, gocv.InterpolationLinear)
	face := image.Rect(int(float64(w)*s), int(float64(h*8/10)*s), int(float64(2*w)*s), int(float64(h*8/10+h)*s))
	return out, face
}
