package match

import (
	"image"
)

// Face is one face found by the engine, in the coordinates of the image it
// was given.
type Face struct {
	Box        image.Rectangle `json:"box"`
	Landmarks  []image.Point   `json:"landmarks"`
	Descriptor Descriptor      `json:"-"`
	Quality    Quality         `json:"quality"`
}
