// Package enrol is the one code path that turns photos into face templates,
// used by the REST API (POST /api/v1/pupils/{id}/enrolment), the admin web
// page (hub/web calls Service.EnrolPhotos) and the bulk command
// `hub enrol --roster roster.csv --photos DIR`.
//
// Each photo passes, in order: a safe file name; byte and pixel limits
// before decoding (a 50 MB upload or a decompression bomb never reaches
// the decoder); a whole file (a truncated JPEG or PNG is refused, never
// decoded into a half-grey face: imagecheck.Sniff); decoding; exactly one
// face; match.QualityPolicy (size, sharpness, yaw/roll, brightness);
// consistency with the pupil's other templates; and the duplicate-identity
// guard — a template closer than DuplicateMax to ANOTHER pupil's template
// is stored for review, never served to gates until an admin approves it. Rejections carry plain-words
// reasons in Vietnamese and English. Nothing is stored without a valid
// consent (hub/consent); photos are kept (encrypted) only if the consent's
// scope allows it.
//
// Photos are analysed in parallel (the engine's worker pool); the checks
// that compare against stored templates and the writes run one at a time
// per hub, so two pupils enrolled at the same moment with the same face
// are still caught.
package enrol

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/consent"
	"github.com/diemdanh/diemdanh/hub/facetemplates"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/imagecheck"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
	"gocv.io/x/gocv"
)

// Engine is what enrolment needs from the face engine (*faceengine.Engine).
type Engine interface {
	RecognizeMat(ctx context.Context, m gocv.Mat) ([]match.Face, error)
	RecognizeTight(ctx context.Context, m gocv.Mat) ([]match.Face, error)
	Model() match.ModelID
	Limits() imagecheck.Limits
	Workers() int
}

// Verdict statuses.
const (
	StatusAccepted = "accepted" // stored and served to gates
	StatusReview   = "review"   // stored, held back until an admin approves
	StatusRejected = "rejected" // not stored
)

// Extra reason codes (match's cover the face itself).
const (
	ReasonTooLarge     = "file_too_large"
	ReasonTooManyPx    = "too_many_pixels"
	ReasonBadName      = "bad_file_name"
	ReasonInconsistent = "inconsistent"
	ReasonDuplicate    = "duplicate"
	ReasonNoConsent    = "no_consent"
	ReasonUnknownPupil = "unknown_pupil"
	ReasonEngine       = "engine_error"
	// ReasonTruncated: the file's end is missing (imagecheck.ErrTruncated),
	// e.g. an upload cut short; the decoder would have filled the rest
	// with grey.
	ReasonTruncated = "truncated"
)

var reasonText = map[string][2]string{
	ReasonTooLarge:     {"the file is too large", "tệp quá lớn"},
	ReasonTooManyPx:    {"the image has too many pixels (possibly a decompression bomb)", "ảnh có quá nhiều điểm ảnh (có thể là tệp độc hại)"},
	ReasonBadName:      {"the file name is not allowed (no folders, '..' or control characters)", "tên tệp không hợp lệ (không được chứa thư mục, '..' hay ký tự điều khiển)"},
	ReasonInconsistent: {"this face does not match the pupil's other photos", "khuôn mặt này không khớp với các ảnh khác của học sinh"},
	ReasonDuplicate:    {"this face looks like another pupil already enrolled; an admin must check it", "khuôn mặt này giống một học sinh khác đã đăng ký; quản trị viên cần kiểm tra"},
	ReasonNoConsent:    {"there is no valid consent for face attendance", "chưa có sự đồng ý hợp lệ cho điểm danh bằng khuôn mặt"},
	ReasonUnknownPupil: {"unknown pupil", "không tìm thấy học sinh"},
	ReasonEngine:       {"the face engine failed on this photo", "lỗi xử lý khuôn mặt với ảnh này"},
	ReasonTruncated:    {"the photo file is incomplete (truncated: its end is missing); send it again", "tệp ảnh không đầy đủ (bị cắt cụt, thiếu phần cuối); hãy gửi lại"},
}

// Reason returns a reason with its English and Vietnamese text.
func Reason(code string) match.QualityReason {
	if t, ok := reasonText[code]; ok {
		return match.QualityReason{Code: code, EN: t[0], VI: t[1]}
	}
	return match.Reason(code)
}

// Photo is one uploaded photo.
type Photo struct {
	Name string
	Data []byte
	// Size is the file's size when Data was not read because it exceeds
	// the byte limit (0: len(Data)).
	Size int64
}

// Duplicate names the other pupil a new template resembles.
type Duplicate struct {
	PupilID    string  `json:"pupil_id"`
	TemplateID int64   `json:"template_id"`
	Distance   float64 `json:"distance"`
}

// Verdict is the outcome for one photo.
type Verdict struct {
	Index      int                   `json:"index"`
	File       string                `json:"file"`
	Status     string                `json:"status"`
	Reasons    []match.QualityReason `json:"reasons,omitempty"`
	Quality    *match.Quality        `json:"quality,omitempty"`
	Faces      int                   `json:"faces"`
	TemplateID int64                 `json:"template_id,omitempty"`
	Duplicate  *Duplicate            `json:"duplicate,omitempty"`
	// OwnDistance is the distance to the nearest of the pupil's other
	// templates (0 when it has none).
	OwnDistance float64 `json:"own_distance,omitempty"`
	// CropJPEG is the accepted face crop (base64 in JSON), for display.
	CropJPEG []byte `json:"crop_jpeg,omitempty"`
}

// Result is the outcome for one pupil.
type Result struct {
	PupilID  string    `json:"pupil_id"`
	Accepted int       `json:"accepted"`
	Review   int       `json:"review"`
	Rejected int       `json:"rejected"`
	Photos   []Verdict `json:"photos"`
}

// Service enrols faces.
type Service struct {
	db      *store.DB
	eng     Engine
	tpl     *facetemplates.Store
	consent *consent.Registry
	audit   *audit.Log
	cfg     Config
	log     *slog.Logger
	now     func() time.Time

	commit sync.Mutex // serialises compare-and-store

	// mmu guards eng, cfg and engines, which a switch of model replaces
	// (SwitchModel, models.go); base is the config as given, whose
	// distances left at 0 follow each model's profile.
	mmu     sync.RWMutex
	base    Config
	engines []*LazyEngine

	fmu        sync.Mutex
	onFeedback []func(ctx context.Context, eventID, pupilID string)
}

// New returns the service.
func New(db *store.DB, eng Engine, tpl *facetemplates.Store, reg *consent.Registry, al *audit.Log, cfg Config, log *slog.Logger, now func() time.Time) (*Service, error) {
	if err := cfg.Validate("enrol"); err != nil {
		return nil, err
	}
	// Distances follow the model the engine really produces (the
	// configured embedder, or an engine built another way in tests and
	// the CLI), and the template store serves that model only.
	model := eng.Model()
	base := cfg
	cfg, err := cfg.ForModel("enrol", model)
	if err != nil {
		return nil, err
	}
	if cfg.Embedder != faceengine.CustomEmbedder {
		cfg.Embedder = model.Name
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if tpl != nil && tpl.Model() != model {
		log.Info("template store follows the enrolment engine's model", "was", tpl.Model().String(), "model", model.String())
		tpl.SetModel(model)
	}
	log.Info("enrolment distances", "model", model.String(), "consistency_max", cfg.ConsistencyMax,
		"duplicate_max", cfg.DuplicateMax, "feedback_match_max", cfg.FeedbackMatchMax)
	if now == nil {
		now = time.Now
	}
	return &Service{db: db, eng: eng, tpl: tpl, consent: reg, audit: al, cfg: cfg, base: base, log: log, now: now}, nil
}

// Config returns the config in force.
func (s *Service) Config() Config { return s.config() }

// config is the config in force, distances of the current model.
func (s *Service) config() Config {
	s.mmu.RLock()
	defer s.mmu.RUnlock()
	return s.cfg
}

// engine is the engine of the current model.
func (s *Service) engine() Engine {
	s.mmu.RLock()
	defer s.mmu.RUnlock()
	return s.eng
}

// CleanName checks an uploaded file name: a plain base name of at most
// 255 bytes of valid UTF-8 without separators, '..' or control characters.
func CleanName(n string) (string, bool) {
	if n == "" {
		return "photo", true
	}
	if len(n) > 255 || !utf8.ValidString(n) || strings.ContainsAny(n, `/\`) || strings.Contains(n, "..") {
		return "", false
	}
	for _, r := range n {
		if unicode.IsControl(r) {
			return "", false
		}
	}
	return n, true
}

// Target is a pupil ready to be enrolled.
type Target struct {
	PupilID  string
	SchoolID string
	Consent  *consent.Consent
}

// Prepare checks the pupil exists, is active and has a valid consent.
func (s *Service) Prepare(ctx context.Context, pupilID string) (Target, error) {
	if !wire.ValidPersonalID(pupilID) {
		return Target{}, api.Invalid("pupil_id", "must be a 12-digit personal ID")
	}
	var school string
	var active bool
	err := s.db.R.QueryRowContext(ctx, `SELECT school_id, active FROM pupils WHERE id = ?`, pupilID).Scan(&school, &active)
	if err != nil || !active {
		return Target{}, &api.Error{Code: api.CodeNotFound, Message: "unknown or inactive pupil " + pupilID}
	}
	c, err := s.consent.Valid(ctx, pupilID)
	if err != nil {
		return Target{}, err
	}
	return Target{PupilID: pupilID, SchoolID: school, Consent: c}, nil
}

// EnrolPhotos is the one enrolment path: it checks consent, analyses the
// photos in parallel and stores those that pass. It fails as a whole (and
// stores nothing) only when the pupil is unknown, has no valid consent or
// the number of photos is out of range; each photo otherwise gets its own
// verdict.
func (s *Service) EnrolPhotos(ctx context.Context, actor, pupilID string, photos []Photo) (*Result, error) {
	if len(photos) == 0 || len(photos) > s.config().MaxPhotos {
		return nil, api.Invalid("photos", "send 1 to %d photos / gửi từ 1 đến %d ảnh", s.config().MaxPhotos, s.config().MaxPhotos)
	}
	t, err := s.Prepare(ctx, pupilID)
	if err != nil {
		return nil, err
	}
	as := s.AnalyzeAll(ctx, photos)
	return s.Commit(ctx, actor, t, as)
}

// Analyzed is a batch of analysed photos (opaque; pass it to Commit).
type Analyzed []analysis

// AnalyzeAll runs the per-photo checks in parallel on the engine's workers.
func (s *Service) AnalyzeAll(ctx context.Context, photos []Photo) Analyzed {
	out := make(Analyzed, len(photos))
	sem := make(chan struct{}, max(1, s.engine().Workers()))
	var wg sync.WaitGroup
	for i, p := range photos {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int, p Photo) {
			defer wg.Done()
			defer func() { <-sem }()
			out[i] = s.analyze(ctx, i, p)
		}(i, p)
	}
	wg.Wait()
	return out
}

// Commit compares the analysed photos with the stored templates and
// stores those that pass (serialised across the hub): each photo that
// passed analysis is committed on its own (commitPhoto), then the
// outcome is counted and the rejections audited (tally).
func (s *Service) Commit(ctx context.Context, actor string, t Target, as Analyzed) (*Result, error) {
	s.commit.Lock()
	defer s.commit.Unlock()
	res := &Result{PupilID: t.PupilID, Photos: make([]Verdict, 0, len(as))}
	var entries []facetemplates.Entry
	loaded := false
	model := s.engine().Model()
	for _, a := range as {
		if a.v.Status == StatusRejected {
			res.Photos = append(res.Photos, a.v)
			continue
		}
		if !loaded {
			var err error
			if entries, err = s.tpl.Entries(ctx, t.SchoolID); err != nil {
				return nil, err
			}
			loaded = true
		}
		v, err := s.commitPhoto(ctx, actor, t, a, model, &entries)
		if err != nil {
			return nil, err
		}
		res.Photos = append(res.Photos, v)
	}
	if err := s.tally(ctx, actor, t, res); err != nil {
		return nil, err
	}
	return res, nil
}

// commitPhoto commits one analysed photo against the school's templates
// (entries, which gains the stored template): the same file again reports
// its template; a face too far from the pupil's own templates is
// rejected; one too near another pupil's is held for review.
func (s *Service) commitPhoto(ctx context.Context, actor string, t Target, a analysis, model match.ModelID, entries *[]facetemplates.Entry) (Verdict, error) {
	v := a.v
	// The same file again (a resumed bulk run, a double submit): report
	// the template it already made.
	var prevID int64
	var prevStatus string
	if err := s.db.W.QueryRowContext(ctx, `SELECT id, status FROM face_templates WHERE pupil_id = ? AND note LIKE ? ORDER BY id LIMIT 1`,
		t.PupilID, "%src:"+a.src+"%").Scan(&prevID, &prevStatus); err == nil {
		v.TemplateID = prevID
		v.Status = StatusAccepted
		if prevStatus == facetemplates.StatusReview {
			v.Status = StatusReview
		}
		return v, nil
	}
	own, hasOwn, other, dup := nearestTemplates(t.PupilID, a.desc, *entries)
	if hasOwn {
		v.OwnDistance = round3(own)
		if own > s.config().ConsistencyMax {
			v.CropJPEG = nil
			return reject(v, ReasonInconsistent), nil
		}
	}
	status, note := facetemplates.StatusActive, "src:"+a.src
	v.Status = StatusAccepted
	if other < s.config().DuplicateMax {
		status = facetemplates.StatusReview
		note = fmt.Sprintf("duplicate_of:%s template:%d distance:%.3f %s", dup.PupilID, dup.TemplateID, dup.Distance, note)
		v.Status = StatusReview
		v.Duplicate = &dup
		v.Reasons = append(v.Reasons, Reason(ReasonDuplicate))
	}
	return s.storeTemplate(ctx, actor, t, a, v, model, status, note, entries)
}

// nearestTemplates is the distance of desc to the pupil's nearest own
// template (hasOwn: there is one) and to the nearest other pupil's (dup).
func nearestTemplates(pupil string, desc match.Descriptor, entries []facetemplates.Entry) (own float64, hasOwn bool, other float64, dup Duplicate) {
	own, other = math.Inf(1), math.Inf(1)
	for _, e := range entries {
		if len(e.Descriptor) != len(desc) {
			continue
		}
		d := match.Distance(desc, e.Descriptor)
		if e.PupilID == pupil {
			hasOwn = true
			own = math.Min(own, d)
		} else if d < other {
			other = d
			dup = Duplicate{PupilID: e.PupilID, TemplateID: e.ID, Distance: round3(d)}
		}
	}
	return own, hasOwn, other, dup
}

// storeTemplate stores a photo's template with status and note (the photo
// itself only with consent to keep photos) and audits it.
func (s *Service) storeTemplate(ctx context.Context, actor string, t Target, a analysis, v Verdict, model match.ModelID,
	status, note string, entries *[]facetemplates.Entry) (Verdict, error) {
	var photo []byte
	if t.Consent != nil && t.Consent.ScopePhotos {
		photo = a.keep
	}
	q := match.Quality{}
	if v.Quality != nil {
		q = *v.Quality
	}
	id, err := s.tpl.AddTemplate(ctx, facetemplates.New{PupilID: t.PupilID, Descriptor: a.desc, Model: model, Quality: q,
		Photo: photo, Status: status, Note: note})
	if err != nil {
		return v, err
	}
	v.TemplateID = id
	*entries = append(*entries, facetemplates.Entry{ID: id, PupilID: t.PupilID, Status: status, Descriptor: a.desc})
	action := audit.ActionEnrol
	if status == facetemplates.StatusReview {
		action = audit.ActionEnrolReview
	}
	detail := map[string]any{"template_id": id, "file": v.File, "photo_kept": photo != nil, "quality": q}
	if v.Duplicate != nil {
		detail["duplicate"] = v.Duplicate
	}
	if err := s.audit.Record(ctx, actor, action, "pupil:"+t.PupilID, detail, ""); err != nil {
		return v, err
	}
	return v, nil
}

// tally counts the photos accepted, held for review and rejected, and
// audits the rejected ones with their reasons in one entry.
func (s *Service) tally(ctx context.Context, actor string, t Target, res *Result) error {
	var rejected []map[string]any
	for _, v := range res.Photos {
		switch v.Status {
		case StatusAccepted:
			res.Accepted++
		case StatusReview:
			res.Review++
		default:
			res.Rejected++
			codes := make([]string, len(v.Reasons))
			for i, r := range v.Reasons {
				codes[i] = r.Code
			}
			rejected = append(rejected, map[string]any{"file": v.File, "reasons": codes})
		}
	}
	if len(rejected) > 0 {
		return s.audit.Record(ctx, actor, audit.ActionEnrolRejected, "pupil:"+t.PupilID, map[string]any{"photos": rejected}, "")
	}
	return nil
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

// ErrNotFound is returned for unknown templates or events.
var ErrNotFound = errors.New("enrol: not found")

// UpgradeTemplates re-embeds (facetemplates.Store.Reembed: every template of
// another model, from its kept photo) when there are templates of an
// earlier version of the engine's embedder (facetemplates.Store.OlderVersions)
// or, with embedder: custom or after an admin's switch of model
// (SwitchModel), templates of any other model not rebuilt yet
// (facetemplates.Store.NotReembedded), and records the report in the audit log as the system. It does nothing
// when there are none (the usual start); an engine that cannot re-embed is
// an error. The app runs it once at start when enrol.reembed_on_upgrade is
// on.
func (s *Service) UpgradeTemplates(ctx context.Context) (*facetemplates.ReembedReport, error) {
	n, err := s.tpl.OlderVersions(ctx)
	if err == nil && n == 0 && (s.config().Embedder == faceengine.CustomEmbedder || s.switched(ctx)) {
		n, err = s.tpl.NotReembedded(ctx)
	}
	if err != nil || n == 0 {
		return nil, err
	}
	emb, ok := s.engine().(facetemplates.Embedder)
	if !ok {
		return nil, fmt.Errorf("enrol: %d templates of an earlier model version, and this engine cannot re-embed", n)
	}
	s.log.Info("re-embedding templates of an earlier model version", "templates", n, "model", s.tpl.Model().String())
	rep, err := s.tpl.Reembed(ctx, emb)
	if err != nil {
		return nil, err
	}
	if err := s.audit.Record(ctx, "system", audit.ActionTemplateStatus, "templates",
		map[string]any{"reembed": rep, "trigger": "model_upgrade"}, ""); err != nil {
		return &rep, err
	}
	return &rep, nil
}
