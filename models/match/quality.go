package match

import (
	"math"
)

// Quality describes how usable a face crop is for recognition.
type Quality struct {
	SizePx     int     `json:"size_px"`    // face box width in pixels of the source image
	Sharpness  float64 `json:"sharpness"`  // variance of the Laplacian on the face scaled to 112 px wide
	YawDeg     float64 `json:"yaw_deg"`    // rough left/right turn from the 5 landmarks (0 = frontal)
	RollDeg    float64 `json:"roll_deg"`   // in-plane tilt of the eye line
	Brightness float64 `json:"brightness"` // mean grey level of the face, 0–255
}

// Score ranks crops of one track: bigger, sharper and more frontal is better.
func (q Quality) Score() float64 {
	size := math.Min(float64(q.SizePx), 200) / 200
	sharp := math.Min(q.Sharpness, 400) / 400
	pose := math.Max(0, 1-math.Abs(q.YawDeg)/45)
	return size*0.4 + sharp*0.3 + pose*0.3
}
