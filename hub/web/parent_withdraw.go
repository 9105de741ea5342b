package web

import (
	"context"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/diemdanh/diemdanh/hub/consent"
)

// A parent withdraws consent to face attendance for their own child:
// GET /parent/withdraw/{pupil} explains what happens and asks for
// confirmation; POST (CSRF, confirm=1) withdraws through the same
// hub/consent Registry.Withdraw an admin's withdrawal uses (templates,
// photos and gate crops deleted, gallery bumped so gates drop the child,
// manual attendance), audited with the parent as actor. A parent reaches
// only the children linked to their account; any other pupil is refused.

// ConsentWithdrawer withdraws a pupil's consent (hub/consent's Registry;
// Deps.Consent provides it when it implements it).
type ConsentWithdrawer interface {
	Withdraw(ctx context.Context, actor, pupilID, reason string) (consent.WithdrawResult, error)
}

// maxWithdrawReason bounds the reason a parent may give (runes).
const maxWithdrawReason = 500

// WithdrawData is the confirmation page.
type WithdrawData struct {
	Child     Child
	Consented bool // a consent is in force (else nothing to withdraw)
	Reason    string
}

// ownChild returns the parent's child with the route's pupil ID, or
// refuses (403) a pupil not linked to the account.
func (s *Server) ownChild(c *gin.Context) (Child, bool) {
	kids, err := s.children(c.Request.Context(), principal(c))
	if err != nil {
		s.failErr(c, err)
		return Child{}, false
	}
	for _, k := range kids {
		if k.PupilID == c.Param("pupil") {
			return k, true
		}
	}
	s.fail(c, http.StatusForbidden, "error.forbidden")
	return Child{}, false
}

func (s *Server) renderWithdraw(c *gin.Context, status int, d *WithdrawData, errKey string) {
	p := s.newPage(c, "parent.withdraw_title", d)
	if errKey != "" {
		p.Error = p.T(errKey)
	}
	s.render(c, status, "parent_withdraw", p)
}

// parentWithdrawPage serves the confirmation page.
func (s *Server) parentWithdrawPage(c *gin.Context) {
	ch, ok := s.ownChild(c)
	if !ok {
		return
	}
	in, _, err := s.consentState(c.Request.Context(), ch.PupilID)
	if err != nil {
		s.failErr(c, err)
		return
	}
	s.renderWithdraw(c, http.StatusOK, &WithdrawData{Child: ch, Consented: in}, "")
}

// parentWithdraw withdraws the consent once the parent confirmed.
func (s *Server) parentWithdraw(c *gin.Context) {
	ch, ok := s.ownChild(c)
	if !ok {
		return
	}
	w, ok := s.d.Consent.(ConsentWithdrawer)
	if !ok {
		s.fail(c, http.StatusServiceUnavailable, "error.internal")
		return
	}
	ctx := c.Request.Context()
	in, _, err := s.consentState(ctx, ch.PupilID)
	if err != nil {
		s.failErr(c, err)
		return
	}
	reason := strings.TrimSpace(c.PostForm("reason"))
	d := &WithdrawData{Child: ch, Consented: in, Reason: reason}
	switch {
	case !in:
		s.renderWithdraw(c, http.StatusConflict, d, "parent.withdraw_none")
		return
	case c.PostForm("confirm") != "1":
		s.renderWithdraw(c, http.StatusBadRequest, d, "parent.withdraw_confirm_required")
		return
	case utf8.RuneCountInString(reason) > maxWithdrawReason:
		s.renderWithdraw(c, http.StatusBadRequest, d, "parent.withdraw_reason_long")
		return
	}
	if reason == "" {
		reason = "parent portal"
	}
	if _, err := w.Withdraw(ctx, principal(c).ActorID(), ch.PupilID, reason); err != nil {
		s.failErr(c, err)
		return
	}
	c.Redirect(http.StatusSeeOther, "/parent?withdrawn=1")
}
