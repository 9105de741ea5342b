package faceengine

import (
	"image/color"
)

// ColorBlack is the border colour for padding (unused with replicated borders).
func ColorBlack() color.RGBA { return color.RGBA{0, 0, 0, 0} }
