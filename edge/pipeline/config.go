package pipeline

import (
	"math"
	"time"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// Config tunes the pipeline.
type Config struct {
	SchoolID  string `yaml:"-"`
	GateID    string `yaml:"-"`
	Direction string `yaml:"-"`

	// Detector is the face detector: "auto" (default: YuNet with the
	// default embedder, HOG with embedders aligned on dlib's landmarks),
	// "yunet" or "hog" (detector.go).
	Detector string `yaml:"detector"`
	// YuNetScore is YuNet's detection threshold (0..1).
	YuNetScore float64 `yaml:"yunet_score"`
	// DetectWidth is the width frames are downscaled to for detection.
	DetectWidth int `yaml:"detect_width"`
	// ROI is the gate region of interest as fractions of the frame
	// [x0, y0, x1, y1]; empty means the whole frame.
	ROI []float64 `yaml:"roi"`
	// MotionThreshold is the mean absolute grey-level change (0–255) on a
	// tiny copy of the frame below which detection is skipped while no
	// face is being tracked. 0 turns motion gating off.
	MotionThreshold float64 `yaml:"motion_threshold"`
	// MinFacePx drops detections narrower than this (full-frame pixels).
	MinFacePx int `yaml:"min_face_px"`
	// MaxFaces keeps at most this many detections per frame (best scores).
	MaxFaces int `yaml:"max_faces"`
	// Upsample doubles the detection image this many times (finds smaller
	// faces at 4× the cost per step).
	Upsample int `yaml:"upsample"`
	// HOGAdjust shifts the detector's threshold (negative finds more).
	HOGAdjust float64 `yaml:"hog_adjust"`
	// FineDetect searches, at full resolution, the places where faces too
	// small for the coarse pass can be: around live tracks whose face is
	// still small, and in moving regions holding no face found (fine.go).
	// It finds pupils as they come into view instead of once they are
	// about 2×80 px wide.
	FineDetect bool `yaml:"fine_detect"`
	// FineMaxArea bounds the fine pass per frame, as a fraction of the
	// frame's area; FineMaxWindows bounds the regions it searches.
	FineMaxArea    float64 `yaml:"fine_max_area"`
	FineMaxWindows int     `yaml:"fine_max_windows"`
	// DecidedDetectEvery runs the detector only on every Nth frame while
	// every tracked face is settled: decided, or out of descriptor attempts
	// (they only need to be followed until they leave). 1 detects on every
	// frame.
	DecidedDetectEvery int `yaml:"decided_detect_every"`

	Tracker TrackerConfig `yaml:"tracker"`
	Vote    VoteConfig    `yaml:"vote"`
	// Decision is the rule that decides a track (decide.go), with the
	// threshold and margin in force and the same safeguards: "votes" (the
	// default), M-of-K votes of per-frame matches (Decide); "mean", the
	// match of the quality-weighted mean of the track's K best descriptors
	// (DecideMean).
	Decision string `yaml:"decision"`
	// UseGalleryOperatingPoint takes threshold and margin from the gallery
	// file when the hub calibrated them (see issue "Recognition").
	UseGalleryOperatingPoint bool `yaml:"use_gallery_operating_point"`
	// CalibrateFAR, when above 0 and the gallery carries no calibrated
	// threshold, derives one on the gate from the gallery's own impostor
	// distances (match.CalibrateThreshold) for this visitor false-accept
	// rate; the stricter of it and vote.threshold is used.
	CalibrateFAR float64 `yaml:"calibrate_far"`
	// Candidates restricts matching to the pupils of the current session
	// window (candidates.go).
	Candidates CandidatesConfig `yaml:"candidates"`

	// DescribeEvery is the minimum number of frames between two
	// descriptors of one track.
	DescribeEvery int `yaml:"describe_every"`
	// MinDescribePx: tracks are described only once the face is this wide
	// (full-frame pixels); smaller crops give poor descriptors.
	MinDescribePx int `yaml:"min_describe_px"`
	// MaxDescribes bounds descriptor attempts per track.
	MaxDescribes int `yaml:"max_describes"`
	// DescribeGrowth spreads a track's descriptor attempts over its life:
	// after the first, a track is described again only once its face is
	// this fraction wider than at its last attempt (a walking face gets
	// closer), or DescribeMaxGap frames have passed (a face that stopped).
	// dlib's margins on East Asian faces only open up on large crops, so
	// attempts spent on a barely grown face are mostly wasted. 0 turns it
	// off (describe every DescribeEvery frames).
	DescribeGrowth float64 `yaml:"describe_growth"`
	// DescribeMaxGap is the most frames between two attempts of a track
	// whose face does not grow (used with DescribeGrowth).
	DescribeMaxGap int `yaml:"describe_max_gap"`
	// VoteQuality is the quality a described crop needs to vote.
	VoteQuality match.QualityPolicy `yaml:"vote_quality"`

	// ReportUnknown publishes an event with student_id "unknown" for a
	// track that never matched (off by default).
	ReportUnknown bool `yaml:"report_unknown"`
	// ReportUnrecognised sends the hub, for its review, every described
	// track that ended without a decision: a wire.Unrecognised with the
	// track's best crop and nearest pupils (unrecognised.go). On by default.
	ReportUnrecognised bool `yaml:"report_unrecognised"`
	// AutoTemplate: a decision well inside the operating point offers
	// its best crop to the hub as an automatic gate template
	// (autotemplate.go). On by default.
	AutoTemplate AutoTemplateConfig `yaml:"auto_template"`
	// FaceCrop attaches a small JPEG of the face to each event.
	FaceCrop bool `yaml:"face_crop"`
	// FaceCropWidth is the width of that JPEG and of an unrecognised
	// face's crop.
	FaceCropWidth int `yaml:"face_crop_width"`

	// Cooldown: 0 means one arrival per pupil per day per direction; a
	// positive value also allows a repeat after that long.
	Cooldown time.Duration `yaml:"cooldown"`
	// Location is the school's time zone, for "per day".
	Location *time.Location `yaml:"-"`
	// WaitForWorkers makes the detector wait for a free descriptor worker
	// instead of skipping a crop when all are busy, and apply each frame's
	// votes in dispatch order voteLag frames later (applyDue) instead of
	// when a worker finishes. Live cameras skip (the newest frame matters
	// more); benchmarks and file runs wait, so their results are the same
	// on every run, whatever the machine's load or the order in which the
	// workers finish.
	WaitForWorkers bool `yaml:"-"`
}

// DefaultConfig returns strict defaults (see edge/README.md and models/README.md).
func DefaultConfig() Config {
	return Config{
		Direction:          wire.DirectionIn,
		Detector:           DetectorAuto,
		YuNetScore:         0.6,
		DetectWidth:        640,
		MotionThreshold:    1.5,
		MinFacePx:          0,
		MaxFaces:           6,
		DecidedDetectEvery: 3,
		FineDetect:         true,
		FineMaxArea:        0.35,
		FineMaxWindows:     6,
		Tracker:            DefaultTrackerConfig(),
		Vote:               DefaultVoteConfig(),
		Decision:           DecisionVotes,
		DescribeEvery:      2,
		MinDescribePx:      64,
		MaxDescribes:       16,
		DescribeGrowth:     0.08,
		DescribeMaxGap:     6,
		VoteQuality: match.QualityPolicy{MinFacePx: 60, MinSharpness: 0, MaxYawDeg: 45, MaxRollDeg: 30,
			MinBrightness: 25, MaxBrightness: 245},
		UseGalleryOperatingPoint: true,
		CalibrateFAR:             0.01,
		Candidates:               DefaultCandidatesConfig(),
		ReportUnrecognised:       true,
		AutoTemplate:             DefaultAutoTemplateConfig(),
		FaceCrop:                 true,
		FaceCropWidth:            112,
		Location:                 time.UTC,
	}
}

// Validate names the first bad field under prefix.
func (c Config) Validate(prefix string) error {
	f := func(name, format string, args ...any) error { return conf.Fieldf(prefix+"."+name, format, args...) }
	switch {
	case c.Detector != DetectorAuto && c.Detector != DetectorYuNet && c.Detector != DetectorHOG:
		return f("detector", "must be %q, %q or %q, got %q", DetectorAuto, DetectorYuNet, DetectorHOG, c.Detector)
	case !(c.YuNetScore > 0 && c.YuNetScore < 1):
		return f("yunet_score", "must be in (0, 1), got %g", c.YuNetScore)
	case c.DetectWidth < 160 || c.DetectWidth > 4096:
		return f("detect_width", "must be 160..4096, got %d", c.DetectWidth)
	case len(c.ROI) != 0 && len(c.ROI) != 4:
		return f("roi", "must be [x0, y0, x1, y1] fractions of the frame")
	case len(c.ROI) == 4 && !(c.ROI[0] >= 0 && c.ROI[1] >= 0 && c.ROI[2] <= 1 && c.ROI[3] <= 1 && c.ROI[2]-c.ROI[0] >= 0.1 && c.ROI[3]-c.ROI[1] >= 0.1):
		return f("roi", "must be fractions 0..1 with x1-x0 and y1-y0 at least 0.1, got %v", c.ROI)
	case c.MotionThreshold < 0 || c.MotionThreshold > 255 || math.IsNaN(c.MotionThreshold):
		return f("motion_threshold", "must be 0..255")
	case c.MinFacePx < 0:
		return f("min_face_px", "must not be negative")
	case c.MaxFaces < 1 || c.MaxFaces > 64:
		return f("max_faces", "must be 1..64, got %d", c.MaxFaces)
	case c.DecidedDetectEvery < 1 || c.DecidedDetectEvery > 25:
		return f("decided_detect_every", "must be 1..25, got %d", c.DecidedDetectEvery)
	case c.FineDetect && !(c.FineMaxArea > 0 && c.FineMaxArea <= 1):
		return f("fine_max_area", "must be a fraction of the frame in (0, 1], got %g", c.FineMaxArea)
	case c.FineDetect && (c.FineMaxWindows < 1 || c.FineMaxWindows > 64):
		return f("fine_max_windows", "must be 1..64, got %d", c.FineMaxWindows)
	case c.Upsample < 0 || c.Upsample > 2:
		return f("upsample", "must be 0..2, got %d", c.Upsample)
	case c.Tracker.MinIoU <= 0 || c.Tracker.MinIoU >= 1:
		return f("tracker.min_iou", "must be between 0 and 1, got %g", c.Tracker.MinIoU)
	case c.Tracker.MaxMissed < 0 || c.Tracker.MaxMissed > 1000:
		return f("tracker.max_missed", "must be 0..1000")
	case c.Tracker.MaxScaleChange != 0 && !(c.Tracker.MaxScaleChange > 1 && c.Tracker.MaxScaleChange <= 10):
		return f("tracker.max_scale_change", "must be 0 (off) or a ratio in (1, 10], got %g", c.Tracker.MaxScaleChange)
	case !(c.Vote.Threshold >= 0 && c.Vote.Threshold < 2):
		return f("vote.threshold", "must be 0 (calibrated) or a real L2 distance below 2, got %g", c.Vote.Threshold)
	case !(c.CalibrateFAR >= 0 && c.CalibrateFAR < 1):
		return f("calibrate_far", "must be 0 (off) or a rate below 1, got %g", c.CalibrateFAR)
	case !(c.Vote.MinMargin >= 0 && c.Vote.MinMargin < 2):
		return f("vote.min_margin", "must be 0..2, got %g", c.Vote.MinMargin)
	case c.Vote.K < 1 || c.Vote.K > 50:
		return f("vote.k", "must be 1..50, got %d", c.Vote.K)
	case c.Vote.M < 1 || c.Vote.M > c.Vote.K:
		return f("vote.m", "must be 1..k (%d), got %d", c.Vote.K, c.Vote.M)
	case c.Decision != DecisionVotes && c.Decision != DecisionMean:
		return f("decision", "must be %q or %q, got %q", DecisionVotes, DecisionMean, c.Decision)
	case c.DescribeEvery < 1:
		return f("describe_every", "must be at least 1")
	case c.MinDescribePx < 0:
		return f("min_describe_px", "must not be negative")
	case c.MaxDescribes < c.Vote.M:
		return f("max_describes", "must be at least vote.m")
	case c.DescribeGrowth < 0 || c.DescribeGrowth > 2 || math.IsNaN(c.DescribeGrowth):
		return f("describe_growth", "must be 0..2, got %v", c.DescribeGrowth)
	case c.DescribeGrowth > 0 && c.DescribeMaxGap < c.DescribeEvery:
		return f("describe_max_gap", "must be at least describe_every")
	case (c.FaceCrop || c.ReportUnrecognised) && (c.FaceCropWidth < 32 || c.FaceCropWidth > 256):
		return f("face_crop_width", "must be 32..256 (with face_crop or report_unrecognised)")
	case c.Cooldown < 0:
		return f("cooldown", "must not be negative")
	}
	if err := c.Candidates.Validate(prefix + ".candidates"); err != nil {
		return err
	}
	if err := c.AutoTemplate.Validate(prefix + ".auto_template"); err != nil {
		return err
	}
	return c.VoteQuality.Validate(prefix + ".vote_quality")
}
