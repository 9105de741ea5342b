package enrol

import (
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/auth"
	"github.com/diemdanh/diemdanh/hub/facetemplates"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/wire"
	"github.com/gin-gonic/gin"
)

// MaxUploadBody bounds a whole enrolment upload (10 photos, each checked
// against the engine's byte limit on its own).
const MaxUploadBody = auth.MaxFormBody

// ReadMultipart reads the photos of a multipart request (fields "photos"
// or "photo"). A file over the engine's byte limit is not read into memory:
// it comes back with Size set and no data, and gets a "file too large"
// verdict. The raw file name of each part is kept so a hostile name
// ("../../x.jpg") is refused rather than silently cleaned.
func (s *Service) ReadMultipart(c *gin.Context) ([]Photo, error) {
	if c.Request.MultipartForm == nil {
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, MaxUploadBody)
		if err := c.Request.ParseMultipartForm(16 << 20); err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return nil, &api.Error{Code: api.CodeTooLarge, Message: "upload too large / dữ liệu tải lên quá lớn"}
			}
			return nil, api.Invalid("photos", "send the photos as multipart/form-data / hãy gửi ảnh dạng multipart/form-data")
		}
	}
	var fhs []*multipart.FileHeader
	for _, k := range []string{"photos", "photo", "photos[]"} {
		fhs = append(fhs, c.Request.MultipartForm.File[k]...)
	}
	if len(fhs) == 0 || len(fhs) > s.config().MaxPhotos {
		return nil, api.Invalid("photos", "send 1 to %d photos / gửi từ 1 đến %d ảnh", s.config().MaxPhotos, s.config().MaxPhotos)
	}
	limit := int64(s.engine().Limits().MaxBytes)
	out := make([]Photo, 0, len(fhs))
	for _, fh := range fhs {
		name := fh.Filename
		if _, params, err := mime.ParseMediaType(fh.Header.Get("Content-Disposition")); err == nil && params["filename"] != "" {
			name = params["filename"]
		}
		p := Photo{Name: name, Size: fh.Size}
		if limit <= 0 || fh.Size <= limit {
			f, err := fh.Open()
			if err != nil {
				return nil, api.Invalid("photos", "unreadable upload")
			}
			p.Data, err = io.ReadAll(io.LimitReader(f, limit+1))
			f.Close()
			if err != nil {
				return nil, api.Invalid("photos", "unreadable upload")
			}
		}
		out = append(out, p)
	}
	return out, nil
}

// Routes registers the enrolment API under r (/api/v1):
//
//	POST /pupils/:id/enrolment         multipart photos (1–10) → Result
//	GET  /pupils/:id/templates         the pupil's templates (no biometrics)
//	DELETE /pupils/:id/templates       delete them all (audited)
//	GET  /enrolment/review             templates held by the duplicate guard
//	POST /templates/:tid/status        {status: active|excluded, note}
//	GET  /templates/:tid/photo         the stored photo (audited view)
//	POST /events/:id/not-this-pupil    {reason}: negative feedback
//	GET  /feedback                     latest "not this pupil" marks
//	POST /templates/reembed            re-embed every template (audited)
func (s *Service) Routes(r gin.IRouter) {
	r.POST("/pupils/:pupil_id/enrolment", auth.Require(auth.PermEnrol), pupilAccess, s.handleEnrol)
	r.GET("/pupils/:pupil_id/templates", auth.Require(auth.PermEnrol), pupilAccess, s.handleListTemplates)
	r.DELETE("/pupils/:pupil_id/templates", auth.Require(auth.PermEnrol), pupilAccess, s.handleDeleteTemplates)
	r.GET("/enrolment/review", auth.Require(auth.PermEnrol), s.handleReviewList)
	r.POST("/templates/:tid/status", auth.Require(auth.PermEnrol), s.handleTemplateStatus)
	r.GET("/templates/:tid/photo", auth.Require(auth.PermPhotos), s.handleTemplatePhoto)
	r.POST("/events/:event_id/not-this-pupil", auth.Require(auth.PermFeedback), s.handleNotThisPupil)
	r.POST("/templates/reembed", auth.Require(auth.PermEnrol), s.handleReembed)
	r.GET("/feedback", auth.Require(auth.PermEnrol), s.handleFeedback)
}

// pupilAccess lets a request on /pupils/:pupil_id through only with a
// valid personal ID that the caller may write the enrolment of.
func pupilAccess(c *gin.Context) {
	if !wire.ValidPersonalID(c.Param("pupil_id")) {
		api.Fail(c, api.Invalid("id", "must be a 12-digit personal ID"))
		return
	}
	if err := api.Authorize(c, api.Access{Action: api.ActionWrite, Resource: "enrolment", PupilID: c.Param("pupil_id")}); err != nil {
		api.Fail(c, err)
		return
	}
	c.Next()
}

// handleEnrol is POST /pupils/:pupil_id/enrolment.
func (s *Service) handleEnrol(c *gin.Context) {
	if _, err := s.Prepare(c.Request.Context(), c.Param("pupil_id")); err != nil {
		api.Fail(c, err) // before reading 64 MB of photos
		return
	}
	photos, err := s.ReadMultipart(c)
	if err != nil {
		api.Fail(c, err)
		return
	}
	res, err := s.EnrolPhotos(c.Request.Context(), api.Actor(c), c.Param("pupil_id"), photos)
	if err != nil {
		api.Fail(c, err)
		return
	}
	api.JSON(c, res)
}

// handleListTemplates is GET /pupils/:pupil_id/templates.
func (s *Service) handleListTemplates(c *gin.Context) {
	l, err := s.tpl.List(c.Request.Context(), c.Param("pupil_id"))
	if err != nil {
		api.Fail(c, err)
		return
	}
	api.JSON(c, gin.H{"templates": l})
}

// handleDeleteTemplates is DELETE /pupils/:pupil_id/templates.
func (s *Service) handleDeleteTemplates(c *gin.Context) {
	if err := s.tpl.DeletePupil(c.Request.Context(), c.Param("pupil_id")); err != nil {
		api.Fail(c, mapTpl(err))
		return
	}
	if err := s.audit.RecordC(c, audit.ActionDelete, "pupil:"+c.Param("pupil_id"), gin.H{"what": "templates"}); err != nil {
		api.Fail(c, err)
		return
	}
	api.JSON(c, gin.H{"ok": true})
}

// handleReviewList is GET /enrolment/review: every school's templates
// held by the duplicate guard.
func (s *Service) handleReviewList(c *gin.Context) {
	if err := api.Authorize(c, api.Access{Action: api.ActionRead, Resource: "enrolment"}); err != nil {
		api.Fail(c, err)
		return
	}
	var out []facetemplates.Info
	schools, err := store.Strings(c.Request.Context(), s.db.R, `SELECT id FROM schools ORDER BY id`)
	if err != nil {
		api.Fail(c, err)
		return
	}
	for _, sc := range schools {
		l, err := s.tpl.ListReview(c.Request.Context(), sc)
		if err != nil {
			api.Fail(c, err)
			return
		}
		out = append(out, l...)
	}
	if out == nil {
		out = []facetemplates.Info{}
	}
	api.JSON(c, gin.H{"templates": out})
}

// templateRoute is the template of /templates/:tid if the caller may
// write its pupil's enrolment; else it has answered the request.
func (s *Service) templateRoute(c *gin.Context) (facetemplates.Info, bool) {
	id, err := strconv.ParseInt(c.Param("tid"), 10, 64)
	if err != nil {
		api.Fail(c, api.Invalid("tid", "must be a template number"))
		return facetemplates.Info{}, false
	}
	in, err := s.tpl.Get(c.Request.Context(), id)
	if err != nil {
		api.Fail(c, mapTpl(err))
		return in, false
	}
	if err := api.Authorize(c, api.Access{Action: api.ActionWrite, Resource: "enrolment", PupilID: in.PupilID}); err != nil {
		api.Fail(c, err)
		return in, false
	}
	return in, true
}

// handleTemplateStatus is POST /templates/:tid/status.
func (s *Service) handleTemplateStatus(c *gin.Context) {
	in, ok := s.templateRoute(c)
	if !ok {
		return
	}
	var req struct {
		Status string `json:"status"`
		Note   string `json:"note"`
	}
	if err := api.BindJSON(c, &req, 4096); err != nil {
		api.Fail(c, err)
		return
	}
	if req.Status != facetemplates.StatusActive && req.Status != facetemplates.StatusExcluded {
		api.Fail(c, api.Invalid("status", "must be active or excluded"))
		return
	}
	if err := s.tpl.SetStatus(c.Request.Context(), in.ID, req.Status, truncate(req.Note, 500)); err != nil {
		api.Fail(c, mapTpl(err))
		return
	}
	if err := s.audit.RecordC(c, audit.ActionTemplateStatus, "pupil:"+in.PupilID, gin.H{"template_id": in.ID, "from": in.Status, "to": req.Status, "note": req.Note}); err != nil {
		api.Fail(c, err)
		return
	}
	api.JSON(c, gin.H{"ok": true})
}

// handleTemplatePhoto is GET /templates/:tid/photo (an audited view).
func (s *Service) handleTemplatePhoto(c *gin.Context) {
	in, ok := s.templateRoute(c)
	if !ok {
		return
	}
	b, err := s.tpl.Photo(c.Request.Context(), in.ID)
	if err != nil {
		api.Fail(c, mapTpl(err))
		return
	}
	if err := s.audit.RecordC(c, audit.ActionPhotoView, "pupil:"+in.PupilID, gin.H{"template_id": in.ID}); err != nil {
		api.Fail(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	c.Data(http.StatusOK, "image/jpeg", b)
}

// handleNotThisPupil is POST /events/:event_id/not-this-pupil.
func (s *Service) handleNotThisPupil(c *gin.Context) {
	pid, err := s.EventPupil(c.Request.Context(), c.Param("event_id"))
	if err != nil {
		api.Fail(c, err)
		return
	}
	if err := api.Authorize(c, api.Access{Action: api.ActionWrite, Resource: "feedback", PupilID: pid}); err != nil {
		api.Fail(c, err)
		return
	}
	var req struct {
		Reason string `json:"reason" form:"reason"`
	}
	if c.Request.ContentLength != 0 {
		if err := c.ShouldBind(&req); err != nil {
			api.Fail(c, api.Invalid("body", "want {reason}"))
			return
		}
	}
	fb, err := s.MarkNotThisPupil(c.Request.Context(), api.Actor(c), c.Param("event_id"), req.Reason)
	if err != nil {
		api.Fail(c, err)
		return
	}
	api.JSON(c, fb)
}

// handleReembed is POST /templates/reembed.
func (s *Service) handleReembed(c *gin.Context) {
	if err := api.Authorize(c, api.Access{Action: api.ActionWrite, Resource: "enrolment"}); err != nil {
		api.Fail(c, err)
		return
	}
	emb, ok := s.engine().(facetemplates.Embedder)
	if !ok {
		api.Fail(c, api.Errorf(api.CodeUnavailable, "this engine cannot re-embed"))
		return
	}
	rep, err := s.tpl.Reembed(c.Request.Context(), emb)
	if err != nil {
		api.Fail(c, err)
		return
	}
	if err := s.audit.RecordC(c, audit.ActionTemplateStatus, "templates", gin.H{"reembed": rep}); err != nil {
		api.Fail(c, err)
		return
	}
	api.JSON(c, rep)
}

// handleFeedback is GET /feedback.
func (s *Service) handleFeedback(c *gin.Context) {
	if err := api.Authorize(c, api.Access{Action: api.ActionRead, Resource: "feedback"}); err != nil {
		api.Fail(c, err)
		return
	}
	n, _ := strconv.Atoi(c.Query("limit"))
	l, err := s.ListFeedback(c.Request.Context(), n)
	if err != nil {
		api.Fail(c, err)
		return
	}
	api.JSON(c, gin.H{"feedback": l})
}

func mapTpl(err error) error {
	if errors.Is(err, facetemplates.ErrNotFound) {
		return &api.Error{Code: api.CodeNotFound, Message: "not found", Err: err}
	}
	return err
}
