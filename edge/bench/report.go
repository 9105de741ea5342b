package bench

// GateTally is the gate's accuracy over a day or the whole run.
type GateTally struct {
	Tally
	UnknownTracks int64 `json:"unknown_tracks"` // tracks never decided
}

// DayTally is one school day's accuracy, with its gallery and what
// learning did after it (DayLearning).
type DayTally struct {
	Day int `json:"day"`
	GateTally
	Frames int64 `json:"frames"`
	DayLearning
}

// RuleReport is one decision rule's accuracy and cost over the days run.
type RuleReport struct {
	Total         GateTally           `json:"total"`
	BySet         map[string]SetTally `json:"by_set"`
	FPS           float64             `json:"fps"`
	CPUPerFrameMS float64             `json:"cpu_ms_per_frame"`
}

// SlowReport is a per-frame rule's result (the naive baseline, the peer)
// over the days it covered.
type SlowReport struct {
	Tally
	BySet         map[string]SetTally `json:"by_set"`
	FPS           float64             `json:"fps"`
	Frames        int64               `json:"frames"`
	CPUPerFrameMS float64             `json:"cpu_ms_per_frame"`
	DaysCovered   []int               `json:"days_covered"`
	Threshold     float64             `json:"threshold"` // distance a match must be within
	Rule          string              `json:"rule"`
	// FramesWithWrongName (peer only) counts the frames in which an
	// enrolled name was put on a visitor or another person
	// (framesWithWrongName).
	FramesWithWrongName *int `json:"frames_with_wrong_name,omitempty"`
}

// SuiteResult is the one JSON object `edge bench --suite` prints. The
// top-level figures are the first decision rule's.
type SuiteResult struct {
	Suite    string `json:"suite"`
	Decision string `json:"decision"` // the rule of days, total, by_set and the figures below
	// Learning: the teacher was played after each day and each day ran
	// with the gallery learnt so far (SuiteOptions.Learn); false: the
	// suite's gallery every day (the control).
	Learning    bool                `json:"learning"`
	Days        []DayTally          `json:"days"`
	Total       GateTally           `json:"total"`
	BySet       map[string]SetTally `json:"by_set"`
	DaysCovered []int               `json:"days_covered"`
	GallerySize int                 `json:"gallery_size"` // people in the gallery
	Threshold   float64             `json:"threshold"`    // calibrated, in force
	MinMargin   float64             `json:"min_margin"`
	Detector    string              `json:"detector"`
	Realtime    bool                `json:"realtime"`
	Frames      int64               `json:"frames"`
	Dropped     int64               `json:"dropped"`
	FPS         float64             `json:"fps"`
	// CPUPerFrameMS is the CPU time of all threads per frame; RSSMB the
	// process's peak resident set over the gate's runs (taken before the
	// baseline and the peer run).
	CPUPerFrameMS float64 `json:"cpu_ms_per_frame"`
	RSSMB         float64 `json:"rss_mb"`
	// Recognisable latency: first recognisable frame (truth) → PUBACK, over
	// the announced passages (latencyFigures.add).
	RecognisableLatencyP50 float64 `json:"recognisable_latency_ms_p50"`
	RecognisableLatencyP95 float64 `json:"recognisable_latency_ms_p95"`
	// LatencyP50/P95: first visible frame → PUBACK, as `edge bench --video`.
	LatencyP50 float64 `json:"latency_ms_p50"`
	LatencyP95 float64 `json:"latency_ms_p95"`
	// AnnouncedInView is the share of announced passages announced no later
	// than the passage's last frame in view: the PUBACK on the video's
	// frame clock in real time, the decision frame in fast mode.
	AnnouncedInView float64 `json:"announced_in_view"`
	Announcements   int     `json:"announcements"` // passages AnnouncedInView is over
	// Rules gives, when more than one decision rule ran, each rule's
	// total and per-set accuracy.
	Rules           map[string]RuleReport `json:"rules,omitempty"`
	Baseline        *SlowReport           `json:"baseline,omitempty"`
	Peer            *SlowReport           `json:"peer,omitempty"`
	ThroughputRatio float64               `json:"throughput_ratio,omitempty"` // fps over the baseline's
	ElapsedS        float64               `json:"elapsed_s"`
}

// fill sets the report's days, totals and figures from the first rule's
// run.
func (res *SuiteResult) fill(rr *ruleRun) {
	res.Decision = rr.decisionRule
	res.Days, res.Total, res.BySet = rr.days, rr.total, rr.bySet
	res.DaysCovered = make([]int, len(rr.days))
	for i, d := range rr.days {
		res.DaysCovered[i] = d.Day
	}
	res.Threshold, res.MinMargin, res.Detector = rr.threshold, rr.minMargin, rr.detector
	res.Frames, res.Dropped = rr.frames, rr.dropped
	res.FPS, res.CPUPerFrameMS = rr.fps(), perFrame(rr.cpu, rr.frames)
	res.RecognisableLatencyP50, res.RecognisableLatencyP95 = pct(rr.lat.fromRecog, 50), pct(rr.lat.fromRecog, 95)
	res.LatencyP50, res.LatencyP95 = pct(rr.lat.fromFirst, 50), pct(rr.lat.fromFirst, 95)
	res.AnnouncedInView, res.Announcements = rr.lat.share(), rr.lat.announced
}
