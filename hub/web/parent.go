package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/diemdanh/diemdanh/hub/auth"
	"github.com/diemdanh/diemdanh/hub/consent"
	"github.com/diemdanh/diemdanh/hub/notify"
)

// Child is one of a parent's children with today and recent history.
type Child struct {
	PupilID, Name, Class string
	GuardianID           int64
	Today                Row
	History              []DayRow
	// GateTemplates: the consent in force allows keeping gate captures
	// as face templates of the child.
	GateTemplates bool
	// Consented: a consent to face attendance is in force (the parent may
	// withdraw it, parent_withdraw.go).
	Consented bool
}

// DayRow is one day of a child's history.
type DayRow struct {
	Day string
	Row Row
}

// ParentData is the parents' portal.
type ParentData struct {
	Children []Child
	Prefs    notify.Prefs
	Channels map[string]bool // configured on this hub
	VAPID    string
	Saved    bool
}

// children lists the pupils linked to a parent account (through
// account_guardians); nothing else is ever shown to a parent.
func (s *Server) children(ctx context.Context, p *auth.Principal) ([]Child, error) {
	rows, err := s.d.DB.R.QueryContext(ctx, `SELECT pu.id, pu.full_name, COALESCE(pu.class_id, ''), g.id
		FROM account_guardians ag JOIN guardians g ON g.id = ag.guardian_id JOIN pupils pu ON pu.id = g.pupil_id
		WHERE ag.account_id = ? AND pu.active = 1 ORDER BY pu.full_name`, p.AccountID)
	if err != nil {
		return nil, fmt.Errorf("web: children: %w", err)
	}
	defer rows.Close()
	var out []Child
	for rows.Next() {
		var ch Child
		if err := rows.Scan(&ch.PupilID, &ch.Name, &ch.Class, &ch.GuardianID); err != nil {
			return nil, fmt.Errorf("web: children: %w", err)
		}
		out = append(out, ch)
	}
	return out, rows.Err()
}

func (s *Server) parentHome(c *gin.Context) {
	ctx := c.Request.Context()
	kids, err := s.children(ctx, principal(c))
	if err != nil {
		s.failErr(c, err)
		return
	}
	d := &ParentData{Channels: map[string]bool{}, Saved: c.Query("saved") == "1"}
	for i := range kids {
		ch := &kids[i]
		if ch.Consented, ch.GateTemplates, err = s.consentState(ctx, ch.PupilID); err != nil {
			s.failErr(c, err)
			return
		}
		if ch.Class == "" {
			continue
		}
		cls, err := s.loadClass(ctx, ch.Class)
		if err != nil {
			s.failErr(c, err)
			return
		}
		ch.Class = cls.Name
		today := s.now().In(cls.Loc)
		for k := 0; k < s.cfg.HistoryDays; k++ {
			day := today.AddDate(0, 0, -k)
			if k > 0 && day.Weekday() == time.Sunday {
				continue
			}
			ds := day.Format("2006-01-02")
			rows, err := s.dayRows(ctx, cls, ds, ch.PupilID)
			if err != nil {
				s.failErr(c, err)
				return
			}
			if len(rows) != 1 {
				continue
			}
			if k == 0 {
				ch.Today = rows[0]
				continue
			}
			if day.Weekday() == time.Saturday && rows[0].EventID == "" && !rows[0].Manual {
				continue
			}
			ch.History = append(ch.History, DayRow{Day: day.Format("02/01"), Row: rows[0]})
		}
	}
	d.Children = kids
	if s.d.Notify != nil && len(kids) > 0 {
		if d.Prefs, err = s.d.Notify.GetPrefs(ctx, kids[0].GuardianID); err != nil {
			s.failErr(c, err)
			return
		}
		for _, ch := range s.d.Notify.Channels() {
			d.Channels[ch] = true
		}
		d.VAPID = s.d.Notify.VAPIDPublicKey()
	}
	p := s.newPage(c, "parent.title", d)
	if d.Saved {
		p.Flash = p.T("board.saved")
	}
	if c.Query("withdrawn") == "1" {
		p.Flash = p.T("parent.withdrawn")
	}
	s.render(c, http.StatusOK, "parent", p)
}

// consentState reports whether a consent to face attendance is in force
// for pupil (hub/consent's Current) and whether it allows keeping gate
// captures as face templates; no consent allows nothing.
func (s *Server) consentState(ctx context.Context, pupil string) (inForce, gateTemplates bool, err error) {
	cur, err := s.d.Consent.Current(ctx, pupil)
	if errors.Is(err, consent.ErrNoConsent) {
		return false, false, nil
	}
	if err != nil {
		return false, false, err
	}
	return cur.ScopeFace, cur.ScopeFace && cur.ScopeGateTemplates != nil && *cur.ScopeGateTemplates, nil
}

func (s *Server) guardianIDs(ctx context.Context, p *auth.Principal) ([]int64, error) {
	kids, err := s.children(ctx, p)
	if err != nil {
		return nil, err
	}
	var ids []int64
	for _, k := range kids {
		ids = append(ids, k.GuardianID)
	}
	return ids, nil
}

// parentPrefs saves channel switches and message language for every
// guardian row of the account.
func (s *Server) parentPrefs(c *gin.Context) {
	if s.d.Notify == nil {
		s.fail(c, http.StatusServiceUnavailable, "error.internal")
		return
	}
	lang := c.PostForm("msg_lang")
	if lang != "vi" && lang != "en" {
		s.fail(c, http.StatusBadRequest, "error.invalid")
		return
	}
	on := map[string]bool{}
	for _, ch := range []string{notify.ChannelPush, notify.ChannelEmail, notify.ChannelWebhook} {
		on[ch] = c.PostForm("ch_"+ch) == "1"
	}
	ids, err := s.guardianIDs(c.Request.Context(), principal(c))
	if err != nil {
		s.failErr(c, err)
		return
	}
	for _, g := range ids {
		if err := s.d.Notify.SetPrefs(c.Request.Context(), g, lang, on); err != nil {
			s.failErr(c, err)
			return
		}
	}
	c.Redirect(http.StatusSeeOther, "/parent?saved=1")
}

type pushSub struct {
	Endpoint string `json:"endpoint"`
	Keys     struct {
		P256dh string `json:"p256dh"`
		Auth   string `json:"auth"`
	} `json:"keys"`
}

// parentPush stores the browser's PushSubscription (JSON body).
func (s *Server) parentPush(c *gin.Context) {
	c.Request.Header.Set("Accept", "application/json")
	if s.d.Notify == nil {
		s.fail(c, http.StatusServiceUnavailable, "error.internal")
		return
	}
	var sub pushSub
	c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, 8<<10)
	if err := c.ShouldBindJSON(&sub); err != nil {
		s.fail(c, http.StatusBadRequest, "error.invalid")
		return
	}
	ids, err := s.guardianIDs(c.Request.Context(), principal(c))
	if err != nil || len(ids) == 0 {
		s.fail(c, http.StatusForbidden, "error.forbidden")
		return
	}
	if err := s.d.Notify.Subscribe(c.Request.Context(), ids[0], sub.Endpoint, sub.Keys.P256dh, sub.Keys.Auth); err != nil {
		c.JSON(http.StatusBadRequest, gin.H{"error": err.Error()})
		return
	}
	c.JSON(http.StatusOK, gin.H{"ok": true})
}
