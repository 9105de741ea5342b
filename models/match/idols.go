package match

import (
	"encoding/json"
	"fmt"
	"os"
)

// IdolData is go-face's test gallery (idols.json): named people and
// precomputed dlib descriptors. It is used by tests, benchmarks and the
// evaluation harness as a descriptor-file input.
type IdolData struct {
	Idols []struct {
		ID       string `json:"id"`
		Name     string `json:"name"`
		BandName string `json:"band_name"`
	} `json:"idols"`
	Faces []struct {
		Descriptor string `json:"descriptor"`
		IdolID     string `json:"idol_id"`
	} `json:"faces"`
}

// LoadIdols reads an idols.json file.
func LoadIdols(path string) (*IdolData, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("idols: %w", err)
	}
	var d IdolData
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("idols: %w", err)
	}
	return &d, nil
}

// Names maps idol ID to "Name, Band".
func (d *IdolData) Names() map[string]string {
	m := make(map[string]string, len(d.Idols))
	for _, i := range d.Idols {
		m[i.ID] = i.Name + ", " + i.BandName
	}
	return m
}

// Labelled returns every descriptor with its idol ID, in file order.
func (d *IdolData) Labelled() ([]string, []Descriptor, error) {
	ids := make([]string, 0, len(d.Faces))
	descs := make([]Descriptor, 0, len(d.Faces))
	for i, f := range d.Faces {
		desc, err := ParseDescriptorBase64(f.Descriptor)
		if err != nil {
			return nil, nil, fmt.Errorf("idols: face %d: %w", i, err)
		}
		ids = append(ids, f.IdolID)
		descs = append(descs, desc)
	}
	return ids, descs, nil
}
