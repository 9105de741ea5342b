package wire

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/match"
)

// GalleryFormat identifies a gallery document.
const GalleryFormat = "diemdanh-gallery/1"

// Limits on a gallery document, so a corrupt or hostile file cannot
// exhaust memory.
const (
	MaxGalleryPeople        = 20000
	MaxDescriptorsPerPerson = 32
	MaxGalleryBytes         = 64 << 20
)

// GalleryDoc is the on-disk and over-HTTP form of a gallery: what the hub
// serves to its gates and what a gate keeps on disk to work offline.
type GalleryDoc struct {
	Format   string          `json:"format"`
	SchoolID string          `json:"school_id"`
	Version  int64           `json:"version"`
	Model    match.ModelID   `json:"model"`
	People   []GalleryPerson `json:"people"`
	// Operating point the hub calibrated for this gallery; zero means the
	// gate uses its configured values.
	Threshold float64 `json:"threshold,omitempty"`
	MinMargin float64 `json:"min_margin,omitempty"`
}

// GalleryPerson is one enrolled person with base64 descriptors.
type GalleryPerson struct {
	StudentID   string   `json:"student_id"`
	Descriptors []string `json:"descriptors"`
	// Sessions the person attends (SessionMorning, SessionAfternoon);
	// empty means every session. Gates restricting candidates by session
	// match a probe only against the pupils of the current one.
	Sessions []string `json:"sessions,omitempty"`
}

// DocFromGallery converts a Gallery to its document form.
func DocFromGallery(school string, g *match.Gallery) *GalleryDoc {
	doc := &GalleryDoc{Format: GalleryFormat, SchoolID: school, Version: g.Version, Model: g.Model}
	for _, id := range g.PersonIDs() {
		p := GalleryPerson{StudentID: id, Sessions: g.Sessions(id)}
		for _, d := range g.Descriptors(id) {
			p.Descriptors = append(p.Descriptors, d.MarshalBase64())
		}
		doc.People = append(doc.People, p)
	}
	return doc
}

// DecodeGallery parses and validates a gallery document and builds the
// Gallery. It never panics on bad input; errors name the bad field.
func DecodeGallery(b []byte) (*GalleryDoc, *match.Gallery, error) {
	var doc GalleryDoc
	if err := decodeStrictDoc(b, &doc, "gallery", MaxGalleryBytes); err != nil {
		return nil, nil, err
	}
	if doc.Format != GalleryFormat {
		return nil, nil, conf.Fieldf("format", "want %q, got %q", GalleryFormat, trunc(doc.Format))
	}
	if doc.SchoolID != "" && !ValidID(doc.SchoolID) {
		return nil, nil, conf.Fieldf("school_id", "invalid %q", trunc(doc.SchoolID))
	}
	if doc.Version < 0 {
		return nil, nil, conf.Fieldf("version", "must not be negative")
	}
	if doc.Model.Name == "" {
		return nil, nil, conf.Fieldf("model.name", "is required")
	}
	if !finite(doc.Threshold) || doc.Threshold < 0 || doc.Threshold > 4 || !finite(doc.MinMargin) || doc.MinMargin < 0 || doc.MinMargin > 4 {
		return nil, nil, conf.Fieldf("threshold", "threshold and min_margin must be in 0..4")
	}
	if len(doc.People) > MaxGalleryPeople {
		return nil, nil, conf.Fieldf("people", "%d people exceeds %d", len(doc.People), MaxGalleryPeople)
	}
	g := match.NewGallery(doc.Version, doc.Model)
	seen := map[string]bool{}
	for i, p := range doc.People {
		field := fmt.Sprintf("people[%d]", i)
		if !ValidPersonalID(p.StudentID) {
			return nil, nil, conf.Fieldf(field+".student_id", "must be a 12-digit personal ID, got %q", trunc(p.StudentID))
		}
		if seen[p.StudentID] {
			return nil, nil, conf.Fieldf(field+".student_id", "duplicate %s", p.StudentID)
		}
		seen[p.StudentID] = true
		if err := match.ValidSessions(p.Sessions); err != nil {
			return nil, nil, conf.Fieldf(field+".sessions", "%v", err)
		}
		if len(p.Descriptors) == 0 || len(p.Descriptors) > MaxDescriptorsPerPerson {
			return nil, nil, conf.Fieldf(field+".descriptors", "must hold 1..%d descriptors, got %d", MaxDescriptorsPerPerson, len(p.Descriptors))
		}
		for j, s := range p.Descriptors {
			d, err := match.ParseDescriptorBase64(s)
			if err != nil {
				return nil, nil, conf.Fieldf(fmt.Sprintf("%s.descriptors[%d]", field, j), "%v", err)
			}
			if err := g.Add(p.StudentID, d); err != nil {
				return nil, nil, conf.Fieldf(fmt.Sprintf("%s.descriptors[%d]", field, j), "%v", err)
			}
		}
		g.SetSessions(p.StudentID, p.Sessions)
	}
	return &doc, g, nil
}

// Encode marshals the document.
func (d *GalleryDoc) Encode() ([]byte, error) {
	b, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("gallery: %w", err)
	}
	return b, nil
}

// LoadGalleryFile reads and decodes a gallery file.
func LoadGalleryFile(path string) (*GalleryDoc, *match.Gallery, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("gallery: %w", err)
	}
	return DecodeGallery(b)
}
