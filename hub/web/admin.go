package web

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/notify"
	"github.com/diemdanh/diemdanh/models/wire"
)

// GateHealth is one gate on the overview.
type GateHealth struct {
	ID, Name, Direction string
	Online              bool
	LastSeen            string
	HeartbeatAgo        string
	FPS                 float64
	Outbox              int
	SkewMs              int64
	UnknownToday        int
	CameraOnline        bool
	// ClockWarn: the gate's clock is off by more than ingest's
	// clock_skew_warn. DiskFull: its outbox refuses new events (its last
	// heartbeat), OutboxRefused of them so far. HasHeartbeat: a heartbeat
	// arrived, so the camera and disk fields mean something.
	ClockWarn, DiskFull, HasHeartbeat bool
	OutboxRefused                     int64
}

// QuarantineRow is one refused payload.
type QuarantineRow struct {
	At, Topic, Reason string
}

// Overview is the admin's screen.
type Overview struct {
	Classes    []ClassLink
	Gates      []GateHealth
	Quarantine []QuarantineRow
	// Review: templates held by the duplicate guard and "not this
	// pupil" marks of the last 7 days (details on /admin/review).
	ReviewWaiting, FeedbackMarks int
	// Breaches: open breaches whose authority was not told, with the
	// 72-hour clock (details on /admin/breaches).
	Breaches []BreachRow
}

func (s *Server) adminOverview(c *gin.Context) {
	ctx := c.Request.Context()
	p := principal(c)
	ov := &Overview{}
	var err error
	if ov.Classes, err = s.visibleClasses(ctx, p); err != nil {
		s.failErr(c, err)
		return
	}
	for i := range ov.Classes {
		cls, err := s.loadClass(ctx, ov.Classes[i].ID)
		if err != nil {
			s.failErr(c, err)
			return
		}
		rows, err := s.dayRows(ctx, cls, s.today(cls.Loc), "")
		if err != nil {
			s.failErr(c, err)
			return
		}
		ov.Classes[i].Counts = countRows(rows)
	}
	if ov.Gates, err = s.gateHealth(ctx, p.SchoolID); err != nil {
		s.failErr(c, err)
		return
	}
	if ov.Quarantine, err = s.quarantine(ctx); err != nil {
		s.failErr(c, err)
		return
	}
	ov.ReviewWaiting, ov.FeedbackMarks = s.reviewCounts(ctx, p.SchoolID)
	if ov.Breaches, err = s.pendingBreaches(ctx, p.SchoolID); err != nil {
		s.failErr(c, err)
		return
	}
	s.render(c, http.StatusOK, "admin", s.newPage(c, "admin.title", ov))
}

func (s *Server) gateHealth(ctx context.Context, school string) ([]GateHealth, error) {
	loc := notify.Zone("")
	now := s.now()
	start := time.Date(now.In(loc).Year(), now.In(loc).Month(), now.In(loc).Day(), 0, 0, 0, 0, loc).UnixMilli()
	rows, err := s.d.DB.R.QueryContext(ctx, `SELECT g.id, g.name, g.direction, g.online, g.last_seen_at, g.last_heartbeat,
		g.clock_skew_ms, g.clock_warn, (SELECT COUNT(*) FROM events e WHERE e.gate_id = g.id AND e.student_id IS NULL AND e.captured_at >= ?)
		FROM gates g WHERE g.active = 1 AND (? = '' OR g.school_id = ?) ORDER BY g.id`, start, school, school)
	if err != nil {
		return nil, fmt.Errorf("web: gates: %w", err)
	}
	defer rows.Close()
	var out []GateHealth
	for rows.Next() {
		var g GateHealth
		var seen int64
		var hb string
		if err := rows.Scan(&g.ID, &g.Name, &g.Direction, &g.Online, &seen, &hb, &g.SkewMs, &g.ClockWarn, &g.UnknownToday); err != nil {
			return nil, fmt.Errorf("web: gates: %w", err)
		}
		if seen > 0 {
			g.LastSeen = time.UnixMilli(seen).In(loc).Format("02/01 15:04:05")
			g.HeartbeatAgo = now.Sub(time.UnixMilli(seen)).Round(time.Second).String()
		}
		var h wire.Heartbeat
		if hb != "" && json.Unmarshal([]byte(hb), &h) == nil {
			g.FPS, g.Outbox, g.CameraOnline, g.HasHeartbeat = h.FPS, h.OutboxDepth, h.CameraOnline, true
			g.DiskFull, g.OutboxRefused = h.DiskFull, h.OutboxRefused
		}
		out = append(out, g)
	}
	return out, rows.Err()
}

func (s *Server) quarantine(ctx context.Context) ([]QuarantineRow, error) {
	rows, err := s.d.DB.R.QueryContext(ctx, `SELECT received_at, topic, reason FROM quarantine ORDER BY id DESC LIMIT 20`)
	if err != nil {
		return nil, fmt.Errorf("web: quarantine: %w", err)
	}
	defer rows.Close()
	loc := notify.Zone("")
	var out []QuarantineRow
	for rows.Next() {
		var at int64
		var q QuarantineRow
		if err := rows.Scan(&at, &q.Topic, &q.Reason); err != nil {
			return nil, fmt.Errorf("web: quarantine: %w", err)
		}
		q.At = time.UnixMilli(at).In(loc).Format("02/01 15:04:05")
		out = append(out, q)
	}
	return out, rows.Err()
}

// PupilOption is a pupil in the enrolment picker.
type PupilOption struct{ ID, Name, Class string }

// EnrolData is the enrolment page.
type EnrolData struct {
	Enabled bool
	Pupils  []PupilOption
	Pupil   string
}

func (s *Server) enrolPage(c *gin.Context) {
	p := principal(c)
	rows, err := s.d.DB.R.QueryContext(c.Request.Context(), `SELECT p.id, p.full_name, COALESCE(c.name, '')
		FROM pupils p LEFT JOIN classes c ON c.id = p.class_id WHERE p.active = 1 AND (? = '' OR p.school_id = ?)
		ORDER BY c.grade, c.name, p.full_name LIMIT 5000`, p.SchoolID, p.SchoolID)
	if err != nil {
		s.failErr(c, err)
		return
	}
	defer rows.Close()
	d := &EnrolData{Enabled: s.d.Enroller != nil, Pupil: c.Query("pupil")}
	for rows.Next() {
		var o PupilOption
		if err := rows.Scan(&o.ID, &o.Name, &o.Class); err == nil {
			d.Pupils = append(d.Pupils, o)
		}
	}
	s.render(c, http.StatusOK, "enrol", s.newPage(c, "enrol.title", d))
}

// VerdictJSON is one photo's verdict as the page shows it.
type VerdictJSON struct {
	File    string   `json:"file"`
	Status  string   `json:"status"`
	Label   string   `json:"label"`
	Reasons []string `json:"reasons"`
	Crop    string   `json:"crop,omitempty"` // data: URL of the accepted crop
}

// enrolSubmit takes 1–10 photos (multipart field "photos") and answers
// with each photo's verdict as JSON.
func (s *Server) enrolSubmit(c *gin.Context) {
	c.Request.Header.Set("Accept", "application/json")
	if s.d.Enroller == nil {
		s.fail(c, http.StatusServiceUnavailable, "enrol.unavailable")
		return
	}
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, s.cfg.MaxUpload)
	form, err := c.MultipartForm()
	if err != nil {
		s.failErr(c, api.Wrap(api.CodeTooLarge, err, "upload too large or malformed"))
		return
	}
	pupil := c.PostForm("pupil_id")
	if !wire.ValidPersonalID(pupil) {
		s.failErr(c, api.Invalid("pupil_id", "must be a 12-digit personal ID"))
		return
	}
	if p := principal(c); p.SchoolID != "" {
		var one int
		if s.d.DB.R.QueryRowContext(c.Request.Context(), `SELECT 1 FROM pupils WHERE id = ? AND school_id = ?`, pupil, p.SchoolID).Scan(&one) != nil {
			s.fail(c, http.StatusForbidden, "error.forbidden")
			return
		}
	}
	fhs := form.File["photos"]
	if len(fhs) < 1 || len(fhs) > 10 {
		s.failErr(c, api.Invalid("photos", "send 1 to 10 photos"))
		return
	}
	var names []string
	var photos [][]byte
	for _, fh := range fhs {
		f, err := fh.Open()
		if err != nil {
			s.failErr(c, api.Wrap(api.CodeInvalid, err, "cannot read upload"))
			return
		}
		b, err := io.ReadAll(io.LimitReader(f, s.cfg.MaxUpload+1))
		f.Close()
		if err != nil {
			s.failErr(c, api.Wrap(api.CodeInvalid, err, "cannot read upload"))
			return
		}
		names = append(names, filepath.Base(filepath.Clean("/"+fh.Filename)))
		photos = append(photos, b)
	}
	vs, err := s.d.Enroller.EnrolPhotos(c.Request.Context(), pupil, names, photos, principal(c).ActorID(), c.ClientIP())
	if err != nil {
		s.failErr(c, err)
		return
	}
	pg := s.newPage(c, "enrol.title", nil)
	out := make([]VerdictJSON, 0, len(vs))
	for _, v := range vs {
		j := VerdictJSON{File: v.File, Status: v.Status, Label: pg.T("enrol." + v.Status)}
		for _, r := range v.Reasons {
			// hub/enrol words reasons "Tiếng Việt / English": show the page's language.
			if vi, en, ok := strings.Cut(r, " / "); ok {
				r = vi
				if pg.Lang == "en" {
					r = en
				}
			}
			j.Reasons = append(j.Reasons, r)
		}
		if len(v.CropJPEG) > 0 {
			j.Crop = "data:image/jpeg;base64," + base64.StdEncoding.EncodeToString(v.CropJPEG)
		}
		out = append(out, j)
	}
	c.JSON(http.StatusOK, gin.H{"pupil_id": pupil, "results": out})
}
