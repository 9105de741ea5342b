package web

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/diemdanh/diemdanh/hub/gallerysrv"
	"github.com/diemdanh/diemdanh/hub/notify"
)

// OperatingPoints reports each school's calibrated recognition operating
// point (hub/gallerysrv.Server implements it). Nil: the page says the
// gallery server is not available.
type OperatingPoints interface {
	OperatingPointReport(ctx context.Context, school string, history int) (*gallerysrv.OperatingPointReport, error)
}

// FRRWarnAbove is the expected single-image false-reject rate above which
// the page warns that many pupils will need a manual check.
const FRRWarnAbove = 0.10

// opHistory is how many past points the page lists.
const opHistory = 10

// OPRow is one operating point as the page shows it (formatted; the raw
// values are kept for data-value attributes).
type OPRow struct {
	Version                        int64
	Computed                       string // school-local time
	Pupils, Templates              int
	Threshold, Served              string
	ThresholdRaw, ServedRaw        float64
	ExpectedFAR, ExpectedFRR       string
	ExpectedFARRaw, ExpectedFRRRaw float64
	Method                         string
	Override, Calibrated           bool
	Reason                         string
	TargetFAR                      string
	TargetFARRaw                   float64
}

// OPSchool is one school's section.
type OPSchool struct {
	ID, Name string
	Embedder string
	Known    bool // a gallery was built (Current exists)
	Cur      OPRow
	Override string // the configured override (when in force)
	Margin   string // the margin sent to gates ("" = gates' own)
	Warnings []string
	History  []OPRow
	// Gates served a candidate-restricted gallery, with their own point.
	Gates []OPGate
}

// OPGate is one gate's own operating point.
type OPGate struct {
	Gate string
	OPRow
}

// OPData is the operating-point page.
type OPData struct {
	Enabled bool
	Schools []OPSchool
}

func pct(v float64) string {
	s := strconv.FormatFloat(100*v, 'f', 2, 64)
	return s + "%"
}

func (s *Server) opRow(pg *page, p gallerysrv.OperatingPoint, loc *time.Location) OPRow {
	r := OPRow{Version: p.GalleryVersion, Pupils: p.Pupils, Templates: p.Templates, Override: p.Override,
		Calibrated: p.Calibrated, ThresholdRaw: p.Threshold, ServedRaw: p.ServedThreshold,
		ExpectedFARRaw: p.ExpectedFAR, ExpectedFRRRaw: p.ExpectedFRR, TargetFARRaw: p.TargetFAR,
		Threshold: fmt.Sprintf("%.3f", p.Threshold), Served: fmt.Sprintf("%.3f", p.ServedThreshold),
		TargetFAR: pct(p.TargetFAR), Method: "–", ExpectedFAR: "–", ExpectedFRR: "–"}
	if p.ComputedAt > 0 {
		r.Computed = time.UnixMilli(p.ComputedAt).In(loc).Format("02/01/2006 15:04")
	}
	if p.Method != "" {
		r.Method = pg.T("op.method." + p.Method)
	}
	if p.Calibrated {
		r.ExpectedFAR = pct(p.ExpectedFAR)
		if p.ExpectedFRR >= 0 {
			r.ExpectedFRR = pct(p.ExpectedFRR)
		} else {
			r.ExpectedFRR = pg.T("op.frr_unmeasurable")
		}
	} else {
		r.Threshold = "–"
	}
	if p.ServedThreshold == 0 {
		r.Served = pg.T("op.gate_own")
	}
	if p.Reason != "" {
		r.Reason = pg.T("op.reason." + p.Reason)
	}
	return r
}

type modelCount struct {
	model string
	n     int
}

// otherModelTemplates counts school's active templates (of active pupils)
// made by another model than served (name@version).
func (s *Server) otherModelTemplates(ctx context.Context, school, served string) ([]modelCount, error) {
	rows, err := s.d.DB.R.QueryContext(ctx, `SELECT t.model, count(*) FROM face_templates t JOIN pupils p ON p.id = t.pupil_id
		WHERE p.school_id = ? AND p.active = 1 AND t.status = 'active' AND t.model != ? GROUP BY t.model ORDER BY t.model`, school, served)
	if err != nil {
		return nil, fmt.Errorf("web: template models: %w", err)
	}
	defer rows.Close()
	var out []modelCount
	for rows.Next() {
		var m modelCount
		if err := rows.Scan(&m.model, &m.n); err != nil {
			return nil, fmt.Errorf("web: template models: %w", err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// operatingPointPage shows each school's recognition operating point: the
// admin's school, or every school for a hub-wide admin.
func (s *Server) operatingPointPage(c *gin.Context) {
	ctx := c.Request.Context()
	p := principal(c)
	d := &OPData{Enabled: s.d.OperatingPoints != nil}
	pg := s.newPage(c, "op.title", d)
	if d.Enabled {
		rows, err := s.d.DB.R.QueryContext(ctx, `SELECT id, name, timezone FROM schools WHERE (? = '' OR id = ?) ORDER BY name, id`, p.SchoolID, p.SchoolID)
		if err != nil {
			s.failErr(c, fmt.Errorf("web: schools: %w", err))
			return
		}
		type school struct{ id, name, tz string }
		var schools []school
		for rows.Next() {
			var sc school
			if err := rows.Scan(&sc.id, &sc.name, &sc.tz); err != nil {
				rows.Close()
				s.failErr(c, err)
				return
			}
			schools = append(schools, sc)
		}
		rows.Close()
		for _, sc := range schools {
			r, err := s.d.OperatingPoints.OperatingPointReport(ctx, sc.id, opHistory)
			if err != nil {
				s.failErr(c, err)
				return
			}
			loc := notify.Zone(sc.tz)
			v := OPSchool{ID: sc.id, Name: sc.name}
			if r.MinMargin > 0 {
				v.Margin = fmt.Sprintf("%.3f", r.MinMargin)
			}
			if r.Current != nil {
				v.Known, v.Embedder, v.Cur = true, r.Current.Embedder, s.opRow(pg, *r.Current, loc)
				cur := r.Current
				if cur.Reason == gallerysrv.ReasonTooFewIdentities {
					v.Warnings = append(v.Warnings, pg.Tr("op.warn.too_small", "pupils", strconv.Itoa(cur.Pupils)))
				} else if cur.Reason != "" {
					v.Warnings = append(v.Warnings, pg.Tr("op.warn.not_calibrated", "reason", v.Cur.Reason))
				}
				if cur.Calibrated && cur.ExpectedFRR > FRRWarnAbove {
					v.Warnings = append(v.Warnings, pg.Tr("op.warn.frr", "frr", v.Cur.ExpectedFRR))
				}
			}
			if v.Known {
				// Templates of another embedder are kept but never served.
				other, err := s.otherModelTemplates(ctx, sc.id, v.Embedder)
				if err != nil {
					s.failErr(c, err)
					return
				}
				for _, o := range other {
					v.Warnings = append(v.Warnings, pg.Tr("op.warn.other_model", "count", strconv.Itoa(o.n), "model", o.model))
				}
			}
			if r.Served.Override {
				v.Override = fmt.Sprintf("%.3f", r.Served.Threshold)
				v.Warnings = append(v.Warnings, pg.Tr("op.warn.override", "value", v.Override))
			}
			for _, g := range r.Gates {
				v.Gates = append(v.Gates, OPGate{Gate: g.GateID, OPRow: s.opRow(pg, g, loc)})
			}
			for _, h := range r.History {
				v.History = append(v.History, s.opRow(pg, h, loc))
			}
			d.Schools = append(d.Schools, v)
		}
	}
	s.render(c, http.StatusOK, "oppoint", pg)
}
