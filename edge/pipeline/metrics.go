package pipeline

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Stats are the pipeline's counters, readable while it runs.
type Stats struct {
	Frames         atomic.Int64 // frames taken from the source
	DetectFrames   atomic.Int64 // frames the detector ran on
	MotionSkipped  atomic.Int64 // frames skipped because nothing moved
	DecidedSkipped atomic.Int64 // frames not searched because every face in view was decided
	Faces          atomic.Int64 // detections kept
	FineWindows    atomic.Int64 // regions the fine pass searched (fine.go)
	FineFaces      atomic.Int64 // faces only the fine pass found
	FineSkipped    atomic.Int64 // fine-pass regions left out by its budget
	TracksStarted  atomic.Int64
	TracksEnded    atomic.Int64
	Describes      atomic.Int64 // descriptor attempts
	DescribeMisses atomic.Int64 // attempts where go-face found no face in the crop
	DescribeSkips  atomic.Int64 // attempts not made because every worker was busy
	QualityRejects atomic.Int64 // descriptors refused by the vote quality policy
	Decisions      atomic.Int64 // tracks decided as an enrolled pupil
	Unknowns       atomic.Int64 // tracks with descriptors that never matched
	Debounced      atomic.Int64 // decisions suppressed as repeats
	Events         atomic.Int64 // events committed to the outbox
	Errors         atomic.Int64
	// Unrecognised faces (unrecognised.go) committed to the outbox, by
	// kind, and those not sent (no crop, no pupil to compare with, or not
	// stored: the outbox was half full).
	Unrecognised        atomic.Int64
	NearMisses          atomic.Int64
	UnrecognisedDropped atomic.Int64
	// AutoTemplates counts decisions whose event offers a template
	// (autotemplate.go; a debounced repeat's event is not sent).
	// AutoTemplateRefused counts, per rule, the decisions that failed it
	// (a decision failing two rules counts under both): what each rule
	// costs.
	AutoTemplates       atomic.Int64
	AutoTemplateRefused struct {
		Distance, Margin, Quality, Agreement, Descriptor atomic.Int64
	}
}

// autoTemplateCounter is rule's counter in AutoTemplateRefused.
func (s *Stats) autoTemplateCounter(rule string) *atomic.Int64 {
	r := &s.AutoTemplateRefused
	switch rule {
	case RuleDistance:
		return &r.Distance
	case RuleMargin:
		return &r.Margin
	case RuleQuality:
		return &r.Quality
	case RuleAgreement:
		return &r.Agreement
	}
	return &r.Descriptor
}

func (s *Stats) autoTemplateRefused(rule string) { s.autoTemplateCounter(rule).Add(1) }

// AutoTemplateRefusals returns AutoTemplateRefused by rule name.
func (s *Stats) AutoTemplateRefusals() map[string]int64 {
	out := make(map[string]int64, len(AutoTemplateRules))
	for _, r := range AutoTemplateRules {
		out[r] = s.autoTemplateCounter(r).Load()
	}
	return out
}

// Metrics are the Prometheus figures of the pipeline. A nil *Metrics is
// valid and records nothing.
type Metrics struct {
	DetectSeconds   prometheus.Histogram
	DescribeSeconds prometheus.Histogram
	DecideSeconds   prometheus.Histogram // first frame of a track → decision
}

// NewMetrics registers the histograms on reg, and counters that read st.
func NewMetrics(reg prometheus.Registerer, st *Stats) *Metrics {
	m := &Metrics{
		DetectSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "edge_detect_seconds",
			Help: "Time to detect faces in one frame.", Buckets: prometheus.ExponentialBuckets(0.002, 2, 10)}),
		DescribeSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "edge_describe_seconds",
			Help: "Time to compute one face descriptor.", Buckets: prometheus.ExponentialBuckets(0.002, 2, 10)}),
		DecideSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "edge_decide_seconds",
			Help: "Time from a track's first frame to its decision.", Buckets: prometheus.ExponentialBuckets(0.05, 2, 10)}),
	}
	counter := func(name, help string, v *atomic.Int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v.Load()) })
	}
	unrecognised := func(kind string, v *atomic.Int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "edge_unrecognised_total",
			Help:        "Unrecognised faces committed to the outbox for the hub's review, by kind (unrecognised, near_miss).",
			ConstLabels: prometheus.Labels{"kind": kind}}, func() float64 { return float64(v.Load()) })
	}
	refused := func(rule string) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "edge_auto_template_refused_total",
			Help:        "Decisions whose event offers no automatic template, by the \"well inside\" rule they failed (one decision may fail several).",
			ConstLabels: prometheus.Labels{"rule": rule}}, func() float64 { return float64(st.autoTemplateCounter(rule).Load()) })
	}
	for _, r := range AutoTemplateRules {
		reg.MustRegister(refused(r))
	}
	reg.MustRegister(m.DetectSeconds, m.DescribeSeconds, m.DecideSeconds,
		counter("edge_frames_total", "Frames taken from the camera.", &st.Frames),
		counter("edge_detect_frames_total", "Frames the detector ran on.", &st.DetectFrames),
		counter("edge_motion_skipped_frames_total", "Frames skipped because nothing moved.", &st.MotionSkipped),
		counter("edge_faces_total", "Faces detected.", &st.Faces),
		counter("edge_tracks_total", "Face tracks started.", &st.TracksStarted),
		counter("edge_describes_total", "Face descriptors computed.", &st.Describes),
		counter("edge_decisions_total", "Tracks decided as an enrolled pupil.", &st.Decisions),
		counter("edge_unknown_tracks_total", "Tracks that never matched an enrolled pupil.", &st.Unknowns),
		counter("edge_debounced_total", "Repeat decisions suppressed by the debounce.", &st.Debounced),
		counter("edge_events_total", "Events committed to the outbox.", &st.Events),
		counter("edge_pipeline_errors_total", "Errors in the pipeline.", &st.Errors),
		unrecognised("unrecognised", &st.Unrecognised),
		unrecognised("near_miss", &st.NearMisses),
		counter("edge_auto_templates_total", "Decisions whose event offers its best crop as an automatic gate template.", &st.AutoTemplates),
		counter("edge_unrecognised_dropped_total", "Undecided tracks not sent for review (no crop, no pupil to compare with, or the outbox half full).", &st.UnrecognisedDropped),
	)
	return m
}

func (m *Metrics) observeDetect(s float64) {
	if m != nil {
		m.DetectSeconds.Observe(s)
	}
}

func (m *Metrics) observeDescribe(s float64) {
	if m != nil {
		m.DescribeSeconds.Observe(s)
	}
}

func (m *Metrics) observeDecide(s float64) {
	if m != nil {
		m.DecideSeconds.Observe(s)
	}
}
