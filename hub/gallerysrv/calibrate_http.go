package gallerysrv

import (
	"net/http"
	"strconv"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/gin-gonic/gin"
)

func errNotFound(msg string) error { return &api.Error{Code: api.CodeNotFound, Message: msg} }

// DefaultHistory is how many past points the API returns by default.
const DefaultHistory = 10

// getOperatingPoint serves GET /schools/:school_id/operating-point
// (admins only: hub/auth's policy; an admin of one school sees only it).
func (s *Server) getOperatingPoint(c *gin.Context) {
	school := c.Param("school_id")
	if err := api.Authorize(c, api.Access{Action: api.ActionRead, Resource: "operating_point", SchoolID: school}); err != nil {
		api.Fail(c, err)
		return
	}
	n := DefaultHistory
	if v := c.Query("history"); v != "" {
		h, err := strconv.Atoi(v)
		if err != nil || h < 1 || h > MaxHistory {
			api.Fail(c, api.Invalid("history", "must be 1..100"))
			return
		}
		n = h
	}
	r, err := s.OperatingPointReport(c.Request.Context(), school, n)
	if err != nil {
		api.Fail(c, err)
		return
	}
	c.JSON(http.StatusOK, r)
}
