package pipeline

import (
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// Automatic templates (auto_template): when a decision is well inside the
// operating point, its event offers the best crop's descriptor to the hub
// as an automatic gate template (wire.EventTemplate), with the evidence.
// "Well inside" is every rule of AutoTemplateConfig at once; the hub
// applies its own rules before it keeps anything (hub/learn).

// Rules of "well inside", as counted in Stats.AutoTemplateRefused and the
// edge_auto_template_refused_total metric.
const (
	RuleDistance   = "distance"   // threshold − distance below min_distance_margin
	RuleMargin     = "margin"     // margin over the second-best pupil below min_margin
	RuleQuality    = "quality"    // the best crop fails the template quality policy
	RuleAgreement  = "agreement"  // too few of the track's votes name the pupil, or too many do not
	RuleDescriptor = "descriptor" // no usable descriptor for the gallery in force
)

// AutoTemplateRules lists the rules in the order they are reported.
var AutoTemplateRules = []string{RuleDistance, RuleMargin, RuleQuality, RuleAgreement, RuleDescriptor}

// AutoTemplateConfig is pipeline.auto_template: when an event offers its
// best crop as an automatic gate template.
type AutoTemplateConfig struct {
	// Enabled adds the template to events whose decision passes every
	// rule below.
	Enabled bool `yaml:"enabled"`
	// MinDistanceMargin: the threshold in force minus the best crop's
	// distance to the pupil must be at least this (real L2, the
	// embedder's scale).
	MinDistanceMargin float64 `yaml:"min_distance_margin"`
	// MinMargin: the best crop must be at least this much nearer to the
	// pupil than to the second-best pupil of the whole gallery.
	MinMargin float64 `yaml:"min_margin"`
	// MinAgreeing of the track's described votes must name the pupil as
	// their nearest, and at most MaxDisagreeing may name someone else.
	MinAgreeing    int `yaml:"min_agreeing"`
	MaxDisagreeing int `yaml:"max_disagreeing"`
	// Quality is what the best crop must pass: stricter than
	// vote_quality (a template is used by every later decision).
	Quality match.QualityPolicy `yaml:"quality"`
}

// DefaultAutoTemplateConfig is on, with margins of 0.10 in SFace's scale
// (the default embedder), at least 3 described votes all naming the
// pupil, and the enrolment photo policy (match.DefaultQualityPolicy) with
// a face at least 80 px wide. What each rule costs and buys on the
// benchmark suite is in edge/README.md ("Automatic templates").
func DefaultAutoTemplateConfig() AutoTemplateConfig {
	q := match.DefaultQualityPolicy()
	q.MinFacePx = 80
	return AutoTemplateConfig{Enabled: true, MinDistanceMargin: 0.10, MinMargin: 0.10, MinAgreeing: 3, MaxDisagreeing: 0, Quality: q}
}

// Validate names the first bad field under prefix.
func (c AutoTemplateConfig) Validate(prefix string) error {
	f := func(name, format string, args ...any) error { return conf.Fieldf(prefix+"."+name, format, args...) }
	switch {
	case !(c.MinDistanceMargin >= 0 && c.MinDistanceMargin < 2):
		return f("min_distance_margin", "must be a real L2 distance in 0..2, got %g", c.MinDistanceMargin)
	case !(c.MinMargin >= 0 && c.MinMargin < 2):
		return f("min_margin", "must be a real L2 distance in 0..2, got %g", c.MinMargin)
	case c.MinAgreeing < 1 || c.MinAgreeing > 1000:
		return f("min_agreeing", "must be 1..1000, got %d", c.MinAgreeing)
	case c.MaxDisagreeing < 0 || c.MaxDisagreeing > 1000:
		return f("max_disagreeing", "must be 0..1000, got %d", c.MaxDisagreeing)
	}
	return c.Quality.Validate(prefix + ".quality")
}

// TemplateEvidence is what the rules judge for one decision.
type TemplateEvidence struct {
	Descriptor     match.Descriptor // the best crop's; nil when unusable
	Quality        match.Quality
	DistanceMargin float64 // threshold − the crop's distance to the pupil
	SecondMargin   float64 // the crop's gap to the second-best pupil of the whole gallery
	Agreeing       int     // votes whose nearest pupil is the decided one
	Votes          int     // the track's described votes
}

// Evidence measures decision d of a track with votes against gal, the
// gallery in force, with vc's threshold. The best crop is matched again
// against the whole gallery (the session window's candidate restriction
// does not apply): its margin is over every other pupil, and 0 when the
// whole gallery's nearest pupil is not d's. A crop whose descriptor does
// not fit the gallery keeps its vote's own figures (and no descriptor).
func Evidence(votes []Vote, d Decision, gal *match.Gallery, vc VoteConfig) TemplateEvidence {
	ev := TemplateEvidence{Quality: d.Best.Quality, Votes: len(votes),
		DistanceMargin: vc.Threshold - d.Best.Match.Distance, SecondMargin: d.Best.Match.Margin()}
	for _, v := range votes {
		if v.Match.PersonID == d.StudentID {
			ev.Agreeing++
		}
	}
	desc := d.Best.Descriptor
	if gal == nil || len(desc) == 0 || len(desc) != gal.Dim() {
		return ev
	}
	ev.Descriptor = desc
	m := gal.Match(desc)
	if m.PersonID != d.StudentID {
		ev.SecondMargin = 0
		return ev
	}
	ev.DistanceMargin, ev.SecondMargin = vc.Threshold-m.Distance, m.Margin()
	return ev
}

// Failed lists the rules ev fails (nil: well inside), in AutoTemplateRules
// order.
func (c AutoTemplateConfig) Failed(ev TemplateEvidence) []string {
	var out []string
	if !(ev.DistanceMargin >= c.MinDistanceMargin) {
		out = append(out, RuleDistance)
	}
	if !(ev.SecondMargin >= c.MinMargin) {
		out = append(out, RuleMargin)
	}
	if len(c.Quality.CheckQuality(ev.Quality)) > 0 {
		out = append(out, RuleQuality)
	}
	if ev.Agreeing < c.MinAgreeing || ev.Votes-ev.Agreeing > c.MaxDisagreeing {
		out = append(out, RuleAgreement)
	}
	if ev.Descriptor == nil {
		out = append(out, RuleDescriptor)
	}
	return out
}

// Template is ev as the event's offer, or nil when the wire would refuse
// it (a descriptor out of its bounds).
func (ev TemplateEvidence) Template() *wire.EventTemplate {
	t := &wire.EventTemplate{Descriptor: ev.Descriptor.Bytes(), DistanceMargin: wireDistance(ev.DistanceMargin),
		SecondMargin: wireDistance(ev.SecondMargin), Agreeing: min(ev.Agreeing, 1000), Votes: min(ev.Votes, 1000)}
	if t.Validate() != nil {
		return nil
	}
	return t
}

// autoTemplateLocked is the template of decision d of a track with votes
// (p.mu held), or nil when auto_template is off or a rule fails; each
// failing rule is counted.
func (p *Pipeline) autoTemplateLocked(votes []Vote, d Decision, vc VoteConfig) *wire.EventTemplate {
	c := p.cfg.AutoTemplate
	if !c.Enabled || !d.OK {
		return nil
	}
	_, gal := p.gal.Current()
	ev := Evidence(votes, d, gal, vc)
	failed := c.Failed(ev)
	for _, r := range failed {
		p.Stats.autoTemplateRefused(r)
	}
	if len(failed) > 0 {
		return nil
	}
	t := ev.Template()
	if t == nil {
		p.Stats.autoTemplateRefused(RuleDescriptor)
		return nil
	}
	p.Stats.AutoTemplates.Add(1)
	return t
}
