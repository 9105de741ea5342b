package sim

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// This file holds the simulator's file formats as plain data (no image
// code), so readers such as edge/bench share one definition with the
// writer.

// TruthFormat identifies the ground-truth file.
const TruthFormat = "diemdanh-gate-truth/1"

// Truth is the ground-truth file of one video.
type Truth struct {
	Format string  `json:"format"`
	FPS    float64 `json:"fps"`
	Width  int     `json:"width"`
	Height int     `json:"height"`
	Frames int     `json:"frames"`
	Seed   int64   `json:"seed"`
	// Day is the school day (1..N) of a suite's video; absent (0) in a
	// single video's truth.
	Day      int       `json:"day,omitempty"`
	Passages []Passage `json:"passages"`
}

// Passage is one person walking towards the camera.
type Passage struct {
	ID        string `json:"id"`
	StudentID string `json:"student_id"` // "" for visitors
	Enrolled  bool   `json:"enrolled"`
	Name      string `json:"name"` // person label from the photo folder
	// Set is the photo's source set in a suite ("faces", "kpop", "casia",
	// "scut"); absent in a single video's truth.
	Set        string `json:"set,omitempty"`
	Photo      string `json:"photo"` // the photo walked (never an enrolment photo)
	FirstFrame int64  `json:"first_frame"`
	LastFrame  int64  `json:"last_frame"`
	// FirstRecognisable (suites only) is the first frame on which the face
	// is at least min_describe_px wide (the gate's default, 64 px: the
	// size from which the gate describes a face), lies wholly inside the
	// frame, is not motion-blurred and is not occluded. The renderer blurs
	// a passage that has motion blur during the first 65 % of its walk
	// (t < 0.65, t running 0..1 from first_frame to last_frame), and
	// occludes one that has occlusion for t in [start, start+0.3); a frame
	// outside both is "not blurred". -1 if no frame qualifies.
	FirstRecognisable int64 `json:"first_recognisable,omitempty"`
	// LastInView (suites only) is the last frame on which any part of the
	// face is inside the frame.
	LastInView int64 `json:"last_in_view,omitempty"`
	MinFacePx  int   `json:"min_face_px"`
	MaxFacePx  int   `json:"max_face_px"`
	Blur       bool  `json:"motion_blur"`
	Occluded   bool  `json:"occluded"`
}

// Visitor reports whether the passage is somebody not in the gallery.
func (p Passage) Visitor() bool { return !p.Enrolled || p.StudentID == "" }

// SuiteFormat identifies a suite manifest (suite.json).
const SuiteFormat = "diemdanh-gate-suite/1"

// Suite is the manifest of a suite of school-day videos sharing one
// gallery. File names in it are relative to the manifest's folder (Path
// resolves them).
type Suite struct {
	Format string `json:"format"`
	// Key hashes everything the suite is made from: seed, options, the
	// embedder and reference models, and every source photo's path and
	// size. A suite with the same key need not be generated again.
	Key       string  `json:"key"`
	Seed      int64   `json:"seed"`
	School    string  `json:"school_id"`
	Embedder  string  `json:"embedder"`  // model of Gallery
	Reference string  `json:"reference"` // model of ReferenceGallery and of every selection decision
	FPS       float64 `json:"fps"`
	Width     int     `json:"width"`
	Height    int     `json:"height"`
	// MinDescribePx is the face width used for first_recognisable.
	MinDescribePx int        `json:"min_describe_px"`
	Days          []SuiteDay `json:"days"`
	// Gallery holds the embedder's descriptors of every pupil; it carries
	// no threshold, so the gate calibrates its own, as it does for a
	// single video's gallery. ReferenceGallery holds the reference
	// model's (dlib-resnet-v1) descriptors of the same enrolment photos.
	Gallery              string `json:"gallery"`
	ReferenceGallery     string `json:"reference_gallery"`
	GallerySize          int    `json:"gallery_size"`
	ReferenceGallerySize int    `json:"reference_gallery_size"`
	ScutEnrolled         int    `json:"scut_enrolled"`  // crowd faces enrolled as pupils who never walk
	WalkingPupils        int    `json:"walking_pupils"` // enrolled people who walk
	EnrolledPassages     int    `json:"enrolled_passages"`
	VisitorPassages      int    `json:"visitor_passages"`
	// Limits says what limits the number of days and the passages.
	Limits  string        `json:"limits"`
	Sources []SuiteSource `json:"sources"`
	// Pupils lists everybody in the galleries with the photos they were
	// enrolled from.
	Pupils []SuitePupil `json:"pupils"`

	dir string // the manifest's folder, set by LoadSuite
}

// SuiteDay is one school day: a video and its truth.
type SuiteDay struct {
	Day              int            `json:"day"`
	Video            string         `json:"video"`
	Truth            string         `json:"truth"`
	Frames           int            `json:"frames"`
	EnrolledPassages int            `json:"enrolled_passages"`
	VisitorPassages  int            `json:"visitor_passages"`
	EnrolledBySet    map[string]int `json:"enrolled_by_set"`
}

// SuiteSource is one photo set and what the suite took from it.
type SuiteSource struct {
	Set    string `json:"set"`
	Dir    string `json:"dir"`
	Photos int    `json:"photos"` // image files found
	// Skipped photos are not usable: the reference model does not find
	// exactly one face of at least 40 px, or the file does not decode.
	Skipped int `json:"skipped"`
	// Inconsistent photos do not look like the rest of their person's
	// photos, or belong to a person dropped as a possible duplicate of a
	// person in another set; they are never used.
	Inconsistent     int `json:"inconsistent"`
	People           int `json:"people"`
	Pupils           int `json:"pupils"`              // walking pupils (3+ usable photos)
	HeldBack         int `json:"held_back_people"`    // people with 1–2 usable photos: visitors
	CrowdEnrolled    int `json:"crowd_enrolled"`      // one-photo faces enrolled, never walking
	VisitorPhotos    int `json:"visitor_photos"`      // photos available to walk as visitors
	EnrolledPassages int `json:"enrolled_passages"`   // over all days
	VisitorPassages  int `json:"visitor_passages"`    // over all days
	ExhaustedAfter   int `json:"exhausted_after_day"` // last day any of its pupils has a photo left
}

// SuitePupil is one person in the galleries.
type SuitePupil struct {
	StudentID string   `json:"student_id"`
	Name      string   `json:"name"`
	Set       string   `json:"set"`
	Enrolment []string `json:"enrolment"` // photos, as in the truth files
	Walks     int      `json:"walks"`     // passages over the suite (0: never walks)
}

// LoadSuite reads and checks a suite manifest.
func LoadSuite(path string) (*Suite, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("suite: %w", err)
	}
	var s Suite
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("suite %s: %w", path, err)
	}
	switch {
	case s.Format != SuiteFormat:
		return nil, fmt.Errorf("suite %s: format %q, want %q", path, s.Format, SuiteFormat)
	case len(s.Days) == 0:
		return nil, fmt.Errorf("suite %s: no days", path)
	case s.Gallery == "" || s.ReferenceGallery == "":
		return nil, fmt.Errorf("suite %s: gallery and reference_gallery are required", path)
	}
	for i, d := range s.Days {
		if d.Day != i+1 || d.Video == "" || d.Truth == "" {
			return nil, fmt.Errorf("suite %s: days[%d]: day %d, video %q, truth %q", path, i, d.Day, d.Video, d.Truth)
		}
	}
	s.dir = filepath.Dir(path)
	return &s, nil
}

// Path resolves a file name of the manifest (a day's video or truth, a
// gallery) against the manifest's folder.
func (s *Suite) Path(name string) string {
	if filepath.IsAbs(name) || s.dir == "" {
		return name
	}
	return filepath.Join(s.dir, name)
}

// Files lists every file the manifest names, resolved.
func (s *Suite) Files() []string {
	out := []string{s.Path(s.Gallery), s.Path(s.ReferenceGallery)}
	for _, d := range s.Days {
		out = append(out, s.Path(d.Video), s.Path(d.Truth))
	}
	return out
}
