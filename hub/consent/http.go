package consent

import (
	"net/http"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/auth"
	"github.com/diemdanh/diemdanh/models/wire"
	"github.com/gin-gonic/gin"
)

// Routes registers the consent API under r (/api/v1), admins only:
//
//	GET  /pupils/:id/consent           current consent and history
//	POST /pupils/:id/consent           record a consent (Grant JSON)
//	POST /pupils/:id/consent/withdraw  {reason}: delete templates, manual attendance
//	GET|PUT /schools/:school_id/consent-policy  the scope new consents get by default (policy.go)
func (r *Registry) Routes(g gin.IRouter) {
	r.policyRoutes(g)
	pupilOK := func(c *gin.Context) {
		if !wire.ValidPersonalID(c.Param("pupil_id")) {
			api.Fail(c, api.Invalid("id", "must be a 12-digit personal ID"))
			return
		}
		if err := api.Authorize(c, api.Access{Action: api.ActionWrite, Resource: "consents", PupilID: c.Param("pupil_id")}); err != nil {
			api.Fail(c, err)
			return
		}
		c.Next()
	}
	g.GET("/pupils/:pupil_id/consent", auth.Require(auth.PermConsent), pupilOK, func(c *gin.Context) {
		h, err := r.History(c.Request.Context(), c.Param("pupil_id"))
		if err != nil {
			api.Fail(c, err)
			return
		}
		cur, err := r.Valid(c.Request.Context(), c.Param("pupil_id"))
		resp := gin.H{"history": h, "valid": err == nil, "current": cur}
		if err != nil {
			_, b := api.BodyOf(err)
			resp["reason"] = b.Message
		}
		api.JSON(c, resp)
	})
	g.POST("/pupils/:pupil_id/consent", auth.Require(auth.PermConsent), pupilOK, func(c *gin.Context) {
		var gr Grant
		if err := api.BindJSON(c, &gr, 1<<14); err != nil {
			api.Fail(c, err)
			return
		}
		gr.PupilID = c.Param("pupil_id")
		id, err := r.Record(c.Request.Context(), api.Actor(c), gr)
		if err != nil {
			api.Fail(c, err)
			return
		}
		c.JSON(http.StatusCreated, gin.H{"id": id})
	})
	g.POST("/pupils/:pupil_id/consent/withdraw", auth.Require(auth.PermConsent), pupilOK, func(c *gin.Context) {
		var req struct {
			Reason string `json:"reason"`
		}
		if err := api.BindJSON(c, &req, 1<<12); err != nil {
			api.Fail(c, err)
			return
		}
		res, err := r.Withdraw(c.Request.Context(), api.Actor(c), c.Param("pupil_id"), req.Reason)
		if err != nil {
			api.Fail(c, err)
			return
		}
		api.JSON(c, res)
	})
}
