package breach

import (
	_ "embed"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/auth"
)

//go:embed openapi.json
var openapiPaths []byte

// OpenAPIPaths is the OpenAPI "paths" fragment of Routes.
func OpenAPIPaths() []byte { return openapiPaths }

// adminSchool lets admins through and returns their school ("" hub-wide).
func adminSchool(c *gin.Context) (string, bool) {
	p := auth.PrincipalOf(c)
	if p == nil {
		api.Fail(c, api.ErrUnauthenticated)
		return "", false
	}
	if p.Role != auth.RoleAdmin {
		api.Fail(c, api.ErrForbidden)
		return "", false
	}
	return p.SchoolID, true
}

// Routes registers the register's API under g (/api/v1), admins only (a
// school's admin: its school's breaches):
//
//	GET  /breaches                        the register, open first
//	POST /breaches                        record a breach (New)
//	GET  /breaches/:id                    one breach, with due_at
//	POST /breaches/:id/actions            {action}: append an action taken
//	POST /breaches/:id/notify-authority   {at, authority}
//	POST /breaches/:id/notify-subjects    {at}
//	POST /breaches/:id/close
func (r *Register) Routes(g gin.IRouter) {
	g.GET("/breaches", func(c *gin.Context) {
		school, ok := adminSchool(c)
		if !ok {
			return
		}
		bs, err := r.List(c.Request.Context(), school)
		if err != nil {
			api.Fail(c, err)
			return
		}
		out := make([]gin.H, 0, len(bs))
		for _, b := range bs {
			out = append(out, r.view(b))
		}
		api.JSON(c, gin.H{"breaches": out})
	})
	g.POST("/breaches", func(c *gin.Context) {
		school, ok := adminSchool(c)
		if !ok {
			return
		}
		var n New
		if err := api.BindJSON(c, &n, 1<<15); err != nil {
			api.Fail(c, err)
			return
		}
		b, err := r.Create(c.Request.Context(), school, n, api.Actor(c), c.ClientIP())
		if err != nil {
			api.Fail(c, err)
			return
		}
		c.JSON(http.StatusCreated, r.view(b))
	})
	g.GET("/breaches/:breach_id", r.one(func(c *gin.Context, school string, id int64) (Breach, error) {
		return r.Get(c.Request.Context(), school, id)
	}))
	r.changeRoutes(g)
}

func (r *Register) changeRoutes(g gin.IRouter) {
	type body struct {
		Action    string    `json:"action"`
		At        time.Time `json:"at"`
		Authority string    `json:"authority"`
	}
	bind := func(c *gin.Context) (body, error) {
		var b body
		err := api.BindJSON(c, &b, 1<<14)
		return b, err
	}
	g.POST("/breaches/:breach_id/actions", r.one(func(c *gin.Context, school string, id int64) (Breach, error) {
		b, err := bind(c)
		if err != nil {
			return Breach{}, err
		}
		return r.AddAction(c.Request.Context(), school, id, b.Action, api.Actor(c), c.ClientIP())
	}))
	g.POST("/breaches/:breach_id/notify-authority", r.one(func(c *gin.Context, school string, id int64) (Breach, error) {
		b, err := bind(c)
		if err != nil {
			return Breach{}, err
		}
		return r.NotifyAuthority(c.Request.Context(), school, id, b.At, b.Authority, api.Actor(c), c.ClientIP())
	}))
	g.POST("/breaches/:breach_id/notify-subjects", r.one(func(c *gin.Context, school string, id int64) (Breach, error) {
		b, err := bind(c)
		if err != nil {
			return Breach{}, err
		}
		return r.NotifySubjects(c.Request.Context(), school, id, b.At, api.Actor(c), c.ClientIP())
	}))
	g.POST("/breaches/:breach_id/close", r.one(func(c *gin.Context, school string, id int64) (Breach, error) {
		return r.Close(c.Request.Context(), school, id, api.Actor(c), c.ClientIP())
	}))
}

// one wraps a handler of one breach: admin check, the ID, the answer.
func (r *Register) one(fn func(c *gin.Context, school string, id int64) (Breach, error)) gin.HandlerFunc {
	return func(c *gin.Context) {
		school, ok := adminSchool(c)
		if !ok {
			return
		}
		id, err := strconv.ParseInt(c.Param("breach_id"), 10, 64)
		if err != nil || id <= 0 {
			api.Fail(c, api.Invalid("breach_id", "must be a breach number"))
			return
		}
		b, err := fn(c, school, id)
		if err != nil {
			api.Fail(c, err)
			return
		}
		api.JSON(c, r.view(b))
	}
}

// view is a breach as the API answers: with its deadline and, while the
// clock runs, the seconds left (negative: overdue).
func (r *Register) view(b Breach) gin.H {
	h := gin.H{"breach": b, "due_at": b.DueAt(), "pending": b.Pending()}
	if b.Pending() {
		h["seconds_left"] = int64(b.Left(r.now()) / time.Second)
	}
	return h
}
