package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"io"
	"io/fs"
	"os"
	"sync"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
)

// analysisFormat identifies the per-photo analysis cache of a suite.
const analysisFormat = "diemdanh-sim-analysis/1"

// analysisFile caches what the engines found in each photo, for one
// embedder and one reference model: a suite analyses a photo once, and a
// new seed or other options reuse the descriptors.
type analysisFile struct {
	Format    string          `json:"format"`
	Embedder  string          `json:"embedder"`
	Reference string          `json:"reference"`
	Photos    []analysisEntry `json:"photos"`
}

// analysisEntry is one photo, matched by path and size.
type analysisEntry struct {
	Path  string `json:"path"`
	Size  int64  `json:"size"`
	Error string `json:"error,omitempty"` // why the photo is not usable
	Note  string `json:"note,omitempty"`  // why the gallery lacks its face
	Box   [4]int `json:"box,omitempty"`   // face in the loaded (scaled) photo
	Ref   string `json:"ref,omitempty"`   // reference descriptor, base64
	Desc  string `json:"desc,omitempty"`  // embedder descriptor, base64; "" if none
}

// analyseCached returns the usable photos (no sprites; loadSprite makes
// them) in photos' order, and how many photos of each source are not
// usable. Photos found in the cache at cachePath (same models, path and
// size) are not analysed again; the cache is rewritten when anything was.
// cachePath "" disables the cache.
func analyseCached(ctx context.Context, eng, ref *faceengine.Engine, photos []photo, sizes []int64, cachePath string, warn io.Writer) ([]*analysed, map[int]int, error) {
	want := analysisFile{Format: analysisFormat, Embedder: eng.Model().String(), Reference: ref.Model().String()}
	cached := readAnalysisCache(cachePath, want, warn)
	entries := make([]analysisEntry, len(photos))
	var todo []int
	for i, ph := range photos {
		if e, ok := cached[ph.Path]; ok && e.Size == sizes[i] {
			entries[i] = e
		} else {
			todo = append(todo, i)
		}
	}
	if len(todo) > 0 {
		fmt.Fprintf(warn, "simulate: analysing %d of %d photos (%d from %s)\n", len(todo), len(photos), len(photos)-len(todo), cachePath)
		if err := analyseEntries(ctx, eng, ref, photos, sizes, todo, entries); err != nil {
			return nil, nil, err
		}
		if cachePath != "" {
			want.Photos = entries
			b, err := json.Marshal(want)
			if err != nil {
				return nil, nil, err
			}
			if err := conf.WriteFileAtomic(cachePath, b, 0o644); err != nil {
				return nil, nil, fmt.Errorf("simulate: analysis cache: %w", err)
			}
		}
	}
	var out []*analysed
	skipped := map[int]int{}
	for i, e := range entries {
		if e.Note != "" {
			fmt.Fprintf(warn, "simulate: %s: %s\n", photos[i].Rel, e.Note)
		}
		if e.Error != "" {
			fmt.Fprintf(warn, "simulate: skipping %s: %s\n", photos[i].Rel, e.Error)
			skipped[photos[i].Source]++
			continue
		}
		a, err := e.analysed(photos[i])
		if err != nil {
			return nil, nil, fmt.Errorf("simulate: analysis of %s: %w", photos[i].Rel, err)
		}
		out = append(out, a)
	}
	return out, skipped, nil
}

// readAnalysisCache returns the cache's entries by path when it is for
// the same models; a missing cache is empty, a bad one is ignored with a
// warning.
func readAnalysisCache(path string, want analysisFile, warn io.Writer) map[string]analysisEntry {
	out := map[string]analysisEntry{}
	if path == "" {
		return out
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return out
	}
	var f analysisFile
	if err == nil {
		err = json.Unmarshal(b, &f)
	}
	if err != nil {
		fmt.Fprintf(warn, "simulate: ignoring the analysis cache %s: %v\n", path, err)
		return out
	}
	if f.Format != want.Format || f.Embedder != want.Embedder || f.Reference != want.Reference {
		return out
	}
	for _, e := range f.Photos {
		out[e.Path] = e
	}
	return out
}

// analyseEntries analyses photos[todo] in parallel into entries.
func analyseEntries(ctx context.Context, eng, ref *faceengine.Engine, photos []photo, sizes []int64, todo []int, entries []analysisEntry) error {
	sem := make(chan struct{}, max(eng.Workers(), 1))
	var wg sync.WaitGroup
	for _, i := range todo {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			entries[i] = analyseEntry(ctx, eng, ref, photos[i], sizes[i])
		}(i)
	}
	wg.Wait()
	return ctx.Err()
}

func analyseEntry(ctx context.Context, eng, ref *faceengine.Engine, ph photo, size int64) analysisEntry {
	e := analysisEntry{Path: ph.Path, Size: size}
	m, err := loadPhoto(ph.Path)
	if err != nil {
		e.Error = err.Error()
		return e
	}
	defer m.Close()
	a, note, err := describeFace(ctx, eng, ref, m, ph)
	if err != nil {
		e.Error = err.Error()
		return e
	}
	e.Note = note
	e.Box = [4]int{a.Box.Min.X, a.Box.Min.Y, a.Box.Max.X, a.Box.Max.Y}
	e.Ref = a.Ref.MarshalBase64()
	if a.Desc != nil {
		e.Desc = a.Desc.MarshalBase64()
	}
	return e
}

func (e analysisEntry) analysed(ph photo) (*analysed, error) {
	a := &analysed{photo: ph, Box: image.Rect(e.Box[0], e.Box[1], e.Box[2], e.Box[3])}
	var err error
	if a.Ref, err = match.ParseDescriptorBase64(e.Ref); err != nil {
		return nil, fmt.Errorf("ref: %w", err)
	}
	if e.Desc != "" {
		if a.Desc, err = match.ParseDescriptorBase64(e.Desc); err != nil {
			return nil, fmt.Errorf("desc: %w", err)
		}
	}
	return a, nil
}

// loadSprite makes a's sprite from its photo and face box.
func loadSprite(a *analysed) error {
	m, err := loadPhoto(a.Path)
	if err != nil {
		return fmt.Errorf("simulate: %s: %w", a.Rel, err)
	}
	defer m.Close()
	a.Sprite, a.Face = makeSprite(m, a.Box)
	return nil
}
