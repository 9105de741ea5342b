package roster

import (
	"bytes"
	_ "embed"
	"net/http"
	"strconv"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/gin-gonic/gin"
)

//go:embed openapi.json
var openapiPaths []byte

// OpenAPIPaths is the OpenAPI "paths" fragment of these routes.
func OpenAPIPaths() []byte { return openapiPaths }

const maxBody = 1 << 20

// Routes registers the roster CRUD under r (the /api/v1 group).
func (s *Store) Routes(r gin.IRouter) {
	r.GET("/schools", s.listSchools)
	r.POST("/schools", s.createSchool)
	r.GET("/schools/:school_id", s.getSchool)
	r.PATCH("/schools/:school_id", s.patchSchool)
	r.DELETE("/schools/:school_id", s.deleteSchool)

	r.GET("/schools/:school_id/classes", s.listClasses)
	r.POST("/schools/:school_id/classes", s.createClass)
	r.GET("/classes/:class_id", s.getClass)
	r.PATCH("/classes/:class_id", s.patchClass)
	r.DELETE("/classes/:class_id", s.deleteClass)

	r.GET("/schools/:school_id/pupils", s.listPupils)
	r.POST("/schools/:school_id/pupils", s.createPupil)
	r.POST("/schools/:school_id/pupils/import", s.importPupils)
	r.GET("/schools/:school_id/pupils/export", s.exportPupils)
	r.GET("/pupils/:pupil_id", s.getPupil)
	r.PATCH("/pupils/:pupil_id", s.patchPupil)
	r.DELETE("/pupils/:pupil_id", s.deletePupil)

	r.GET("/pupils/:pupil_id/guardians", s.listGuardians)
	r.POST("/pupils/:pupil_id/guardians", s.createGuardian)
	r.PATCH("/guardians/:guardian_id", s.patchGuardian)
	r.DELETE("/guardians/:guardian_id", s.deleteGuardian)

	r.GET("/schools/:school_id/staff", s.listStaff)
	r.POST("/schools/:school_id/staff", s.createStaff)
	r.GET("/staff/:staff_id", s.getStaff)
	r.PATCH("/staff/:staff_id", s.patchStaff)
	r.DELETE("/staff/:staff_id", s.deleteStaff)

	r.GET("/gates", s.listAllGates)
	r.GET("/schools/:school_id/gates", s.listGates)
	r.POST("/schools/:school_id/gates", s.createGate)
	r.GET("/gates/:gate_id", s.getGate)
	r.PATCH("/gates/:gate_id", s.patchGate)
	r.DELETE("/gates/:gate_id", s.deleteGate)
	r.POST("/gates/:gate_id/credentials", s.rotateGate)
}

func authz(c *gin.Context, a api.Access) bool {
	if err := api.Authorize(c, a); err != nil {
		api.Fail(c, err)
		return false
	}
	return true
}

func done(c *gin.Context, status int, v any, err error) {
	if err != nil {
		api.Fail(c, err)
		return
	}
	if v == nil {
		c.Status(status)
		return
	}
	c.JSON(status, v)
}

// ---- schools ----

// listSchools lists every school to whoever may read them all (a hub-wide
// admin) and otherwise only the schools the caller may read one by one:
// a school's admin and teachers their school, a parent the schools of
// their children. A caller who may read none gets the refusal.
func (s *Store) listSchools(c *gin.Context) {
	all := api.Authorize(c, api.Access{Action: api.ActionRead, Resource: "schools"})
	if all != nil && api.CodeOf(all) != api.CodeForbidden {
		api.Fail(c, all)
		return
	}
	v, err := s.Schools(c)
	if err != nil || all == nil {
		done(c, http.StatusOK, v, err)
		return
	}
	out := []School{}
	for _, x := range v {
		if api.Authorize(c, api.Access{Action: api.ActionRead, Resource: "schools", SchoolID: x.ID}) == nil {
			out = append(out, x)
		}
	}
	if len(out) == 0 {
		api.Fail(c, all)
		return
	}
	done(c, http.StatusOK, out, nil)
}

func (s *Store) createSchool(c *gin.Context) {
	var x School
	if err := api.BindJSON(c, &x, maxBody); err != nil {
		api.Fail(c, err)
		return
	}
	if !authz(c, api.Access{Action: api.ActionWrite, Resource: "schools", SchoolID: x.ID}) {
		return
	}
	if _, err := s.School(c.Request.Context(), x.ID); err == nil {
		api.Fail(c, &api.Error{Code: api.CodeConflict, Field: "id", Message: "school already exists"})
		return
	}
	v, err := s.PutSchool(actx(c), x)
	done(c, http.StatusCreated, v, err)
}

func (s *Store) getSchool(c *gin.Context) {
	id := c.Param("school_id")
	if !authz(c, api.Access{Action: api.ActionRead, Resource: "schools", SchoolID: id}) {
		return
	}
	v, err := s.School(c.Request.Context(), id)
	done(c, http.StatusOK, v, err)
}

func (s *Store) patchSchool(c *gin.Context) {
	id := c.Param("school_id")
	if !authz(c, api.Access{Action: api.ActionWrite, Resource: "schools", SchoolID: id}) {
		return
	}
	x, err := s.School(c.Request.Context(), id)
	if err == nil {
		err = api.BindJSON(c, &x, maxBody)
	}
	if err == nil {
		x.ID = id
		x, err = s.PutSchool(actx(c), x)
	}
	done(c, http.StatusOK, x, err)
}

func (s *Store) deleteSchool(c *gin.Context) {
	id := c.Param("school_id")
	if !authz(c, api.Access{Action: api.ActionWrite, Resource: "schools", SchoolID: id}) {
		return
	}
	done(c, http.StatusNoContent, nil, s.DeleteSchool(actx(c), id))
}

// ---- classes ----

func (s *Store) listClasses(c *gin.Context) {
	school := c.Param("school_id")
	if !authz(c, api.Access{Action: api.ActionRead, Resource: "classes", SchoolID: school}) {
		return
	}
	if err := s.checkSchoolRef(c.Request.Context(), school); err != nil {
		api.Fail(c, err)
		return
	}
	v, err := s.Classes(c.Request.Context(), school)
	done(c, http.StatusOK, v, err)
}

func (s *Store) createClass(c *gin.Context) {
	school := c.Param("school_id")
	x := Class{Active: true, LateAfterMin: 15}
	if err := api.BindJSON(c, &x, maxBody); err != nil {
		api.Fail(c, err)
		return
	}
	x.SchoolID = school
	if !authz(c, api.Access{Action: api.ActionWrite, Resource: "classes", SchoolID: school, ClassID: x.ID}) {
		return
	}
	if _, err := s.Class(c.Request.Context(), x.ID); err == nil {
		api.Fail(c, &api.Error{Code: api.CodeConflict, Field: "id", Message: "class already exists"})
		return
	}
	v, err := s.PutClass(actx(c), x)
	done(c, http.StatusCreated, v, err)
}

func (s *Store) getClass(c *gin.Context) {
	x, err := s.Class(c.Request.Context(), c.Param("class_id"))
	if err != nil {
		api.Fail(c, err)
		return
	}
	if !authz(c, api.Access{Action: api.ActionRead, Resource: "classes", SchoolID: x.SchoolID, ClassID: x.ID}) {
		return
	}
	c.JSON(http.StatusOK, x)
}

func (s *Store) patchClass(c *gin.Context) {
	x, err := s.Class(c.Request.Context(), c.Param("class_id"))
	if err != nil {
		api.Fail(c, err)
		return
	}
	if !authz(c, api.Access{Action: api.ActionWrite, Resource: "classes", SchoolID: x.SchoolID, ClassID: x.ID}) {
		return
	}
	id, school := x.ID, x.SchoolID
	if err := api.BindJSON(c, &x, maxBody); err != nil {
		api.Fail(c, err)
		return
	}
	x.ID, x.SchoolID = id, school
	x, err = s.PutClass(actx(c), x)
	done(c, http.StatusOK, x, err)
}

func (s *Store) deleteClass(c *gin.Context) {
	x, err := s.Class(c.Request.Context(), c.Param("class_id"))
	if err != nil {
		api.Fail(c, err)
		return
	}
	if !authz(c, api.Access{Action: api.ActionWrite, Resource: "classes", SchoolID: x.SchoolID, ClassID: x.ID}) {
		return
	}
	done(c, http.StatusNoContent, nil, s.DeleteClass(actx(c), x.ID))
}

// ---- pupils ----

func (s *Store) listPupils(c *gin.Context) {
	school := c.Param("school_id")
	f := PupilFilter{ClassID: c.Query("class_id"), ActiveOnly: c.Query("active") == "1" || c.Query("active") == "true"}
	if !authz(c, api.Access{Action: api.ActionRead, Resource: "pupils", SchoolID: school, ClassID: f.ClassID}) {
		return
	}
	if err := s.checkSchoolRef(c.Request.Context(), school); err != nil {
		api.Fail(c, err)
		return
	}
	v, err := s.Pupils(c.Request.Context(), school, f)
	done(c, http.StatusOK, v, err)
}

func (s *Store) createPupil(c *gin.Context) {
	school := c.Param("school_id")
	x := Pupil{Active: true}
	if err := api.BindJSON(c, &x, maxBody); err != nil {
		api.Fail(c, err)
		return
	}
	x.SchoolID = school
	if !authz(c, api.Access{Action: api.ActionWrite, Resource: "pupils", SchoolID: school, ClassID: x.ClassID, PupilID: x.ID}) {
		return
	}
	if _, err := s.Pupil(c.Request.Context(), x.ID); err == nil {
		api.Fail(c, &api.Error{Code: api.CodeConflict, Field: "id", Message: "a pupil with this personal ID already exists"})
		return
	}
	v, err := s.PutPupil(actx(c), x)
	done(c, http.StatusCreated, v, err)
}

func (s *Store) getPupil(c *gin.Context) {
	x, err := s.Pupil(c.Request.Context(), c.Param("pupil_id"))
	if err != nil {
		api.Fail(c, err)
		return
	}
	if !authz(c, api.Access{Action: api.ActionRead, Resource: "pupils", SchoolID: x.SchoolID, ClassID: x.ClassID, PupilID: x.ID}) {
		return
	}
	c.JSON(http.StatusOK, x)
}

func (s *Store) patchPupil(c *gin.Context) {
	x, err := s.Pupil(c.Request.Context(), c.Param("pupil_id"))
	if err != nil {
		api.Fail(c, err)
		return
	}
	if !authz(c, api.Access{Action: api.ActionWrite, Resource: "pupils", SchoolID: x.SchoolID, ClassID: x.ClassID, PupilID: x.ID}) {
		return
	}
	id, school := x.ID, x.SchoolID
	if err := api.BindJSON(c, &x, maxBody); err != nil {
		api.Fail(c, err)
		return
	}
	x.ID, x.SchoolID = id, school
	x, err = s.PutPupil(actx(c), x)
	done(c, http.StatusOK, x, err)
}

func (s *Store) deletePupil(c *gin.Context) {
	x, err := s.Pupil(c.Request.Context(), c.Param("pupil_id"))
	if err != nil {
		api.Fail(c, err)
		return
	}
	if !authz(c, api.Access{Action: api.ActionWrite, Resource: "pupils", SchoolID: x.SchoolID, ClassID: x.ClassID, PupilID: x.ID}) {
		return
	}
	done(c, http.StatusNoContent, nil, s.DeletePupil(actx(c), x.ID))
}

func (s *Store) importPupils(c *gin.Context) {
	school := c.Param("school_id")
	if !authz(c, api.Access{Action: api.ActionWrite, Resource: "pupils", SchoolID: school}) {
		return
	}
	dry := c.Query("dry_run") == "1" || c.Query("dry_run") == "true"
	body := http.MaxBytesReader(c.Writer, c.Request.Body, MaxCSVBytes+1)
	rep, err := s.ImportPupilsCSV(actx(c), school, body, dry)
	done(c, http.StatusOK, rep, err)
}

func (s *Store) exportPupils(c *gin.Context) {
	school := c.Param("school_id")
	if !authz(c, api.Access{Action: api.ActionRead, Resource: "pupils", SchoolID: school}) {
		return
	}
	var buf bytes.Buffer
	if err := s.ExportPupilsCSV(c.Request.Context(), school, &buf); err != nil {
		api.Fail(c, err)
		return
	}
	c.Header("Content-Disposition", `attachment; filename="pupils-`+school+`.csv"`)
	c.Data(http.StatusOK, "text/csv; charset=utf-8", append([]byte("\xEF\xBB\xBF"), buf.Bytes()...))
}

// ---- guardians ----

func (s *Store) pupilAccess(c *gin.Context, id, action string) (Pupil, bool) {
	p, err := s.Pupil(c.Request.Context(), id)
	if err != nil {
		api.Fail(c, err)
		return p, false
	}
	return p, authz(c, api.Access{Action: action, Resource: "guardians", SchoolID: p.SchoolID, ClassID: p.ClassID, PupilID: p.ID})
}

func (s *Store) listGuardians(c *gin.Context) {
	p, ok := s.pupilAccess(c, c.Param("pupil_id"), api.ActionRead)
	if !ok {
		return
	}
	v, err := s.Guardians(c.Request.Context(), p.ID)
	done(c, http.StatusOK, v, err)
}

func (s *Store) createGuardian(c *gin.Context) {
	p, ok := s.pupilAccess(c, c.Param("pupil_id"), api.ActionWrite)
	if !ok {
		return
	}
	var x Guardian
	if err := api.BindJSON(c, &x, maxBody); err != nil {
		api.Fail(c, err)
		return
	}
	x.ID, x.PupilID = 0, p.ID
	v, err := s.PutGuardian(actx(c), x)
	done(c, http.StatusCreated, v, err)
}

func (s *Store) guardianAccess(c *gin.Context) (Guardian, bool) {
	id, err := strconv.ParseInt(c.Param("guardian_id"), 10, 64)
	if err != nil {
		api.Fail(c, api.Invalid("guardian_id", "must be a number"))
		return Guardian{}, false
	}
	g, err := s.Guardian(c.Request.Context(), id)
	if err != nil {
		api.Fail(c, err)
		return g, false
	}
	_, ok := s.pupilAccess(c, g.PupilID, api.ActionWrite)
	return g, ok
}

func (s *Store) patchGuardian(c *gin.Context) {
	x, ok := s.guardianAccess(c)
	if !ok {
		return
	}
	id, pupil := x.ID, x.PupilID
	if err := api.BindJSON(c, &x, maxBody); err != nil {
		api.Fail(c, err)
		return
	}
	x.ID, x.PupilID = id, pupil
	v, err := s.PutGuardian(actx(c), x)
	done(c, http.StatusOK, v, err)
}

func (s *Store) deleteGuardian(c *gin.Context) {
	x, ok := s.guardianAccess(c)
	if !ok {
		return
	}
	done(c, http.StatusNoContent, nil, s.DeleteGuardian(actx(c), x.ID))
}

// ---- staff ----

func (s *Store) listStaff(c *gin.Context) {
	school := c.Param("school_id")
	if !authz(c, api.Access{Action: api.ActionRead, Resource: "staff", SchoolID: school}) {
		return
	}
	if err := s.checkSchoolRef(c.Request.Context(), school); err != nil {
		api.Fail(c, err)
		return
	}
	v, err := s.StaffList(c.Request.Context(), school)
	done(c, http.StatusOK, v, err)
}

func (s *Store) createStaff(c *gin.Context) {
	school := c.Param("school_id")
	x := Staff{Active: true}
	if err := api.BindJSON(c, &x, maxBody); err != nil {
		api.Fail(c, err)
		return
	}
	x.SchoolID = school
	if !authz(c, api.Access{Action: api.ActionWrite, Resource: "staff", SchoolID: school}) {
		return
	}
	if _, err := s.StaffMember(c.Request.Context(), x.ID); err == nil {
		api.Fail(c, &api.Error{Code: api.CodeConflict, Field: "id", Message: "staff member already exists"})
		return
	}
	v, err := s.PutStaff(actx(c), x)
	done(c, http.StatusCreated, v, err)
}

func (s *Store) staffAccess(c *gin.Context, action string) (Staff, bool) {
	x, err := s.StaffMember(c.Request.Context(), c.Param("staff_id"))
	if err != nil {
		api.Fail(c, err)
		return x, false
	}
	return x, authz(c, api.Access{Action: action, Resource: "staff", SchoolID: x.SchoolID})
}

func (s *Store) getStaff(c *gin.Context) {
	x, ok := s.staffAccess(c, api.ActionRead)
	if ok {
		c.JSON(http.StatusOK, x)
	}
}

func (s *Store) patchStaff(c *gin.Context) {
	x, ok := s.staffAccess(c, api.ActionWrite)
	if !ok {
		return
	}
	id, school := x.ID, x.SchoolID
	if err := api.BindJSON(c, &x, maxBody); err != nil {
		api.Fail(c, err)
		return
	}
	x.ID, x.SchoolID = id, school
	v, err := s.PutStaff(actx(c), x)
	done(c, http.StatusOK, v, err)
}

func (s *Store) deleteStaff(c *gin.Context) {
	x, ok := s.staffAccess(c, api.ActionWrite)
	if ok {
		done(c, http.StatusNoContent, nil, s.DeleteStaff(actx(c), x.ID))
	}
}

// ---- gates ----

func (s *Store) listAllGates(c *gin.Context) {
	if !authz(c, api.Access{Action: api.ActionRead, Resource: "gates"}) {
		return
	}
	v, err := s.Gates(c.Request.Context(), "")
	done(c, http.StatusOK, v, err)
}

func (s *Store) listGates(c *gin.Context) {
	school := c.Param("school_id")
	if !authz(c, api.Access{Action: api.ActionRead, Resource: "gates", SchoolID: school}) {
		return
	}
	if err := s.checkSchoolRef(c.Request.Context(), school); err != nil {
		api.Fail(c, err)
		return
	}
	v, err := s.Gates(c.Request.Context(), school)
	done(c, http.StatusOK, v, err)
}

// gateInput is what a client may set on a gate.
type gateInput struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Direction string `json:"direction"`
	Active    *bool  `json:"active,omitempty"`
}

func (s *Store) createGate(c *gin.Context) {
	school := c.Param("school_id")
	var in gateInput
	if err := api.BindJSON(c, &in, maxBody); err != nil {
		api.Fail(c, err)
		return
	}
	if !authz(c, api.Access{Action: api.ActionWrite, Resource: "gates", SchoolID: school, GateID: in.ID}) {
		return
	}
	v, err := s.CreateGate(actx(c), Gate{ID: in.ID, SchoolID: school, Name: in.Name, Direction: in.Direction})
	done(c, http.StatusCreated, v, err)
}

func (s *Store) gateAccess(c *gin.Context, action string) (Gate, bool) {
	x, err := s.Gate(c.Request.Context(), c.Param("gate_id"))
	if err != nil {
		api.Fail(c, err)
		return x, false
	}
	return x, authz(c, api.Access{Action: action, Resource: "gates", SchoolID: x.SchoolID, GateID: x.ID})
}

func (s *Store) getGate(c *gin.Context) {
	x, ok := s.gateAccess(c, api.ActionRead)
	if ok {
		c.JSON(http.StatusOK, x)
	}
}

func (s *Store) patchGate(c *gin.Context) {
	x, ok := s.gateAccess(c, api.ActionWrite)
	if !ok {
		return
	}
	in := gateInput{Name: x.Name, Direction: x.Direction}
	if err := api.BindJSON(c, &in, maxBody); err != nil {
		api.Fail(c, err)
		return
	}
	if in.ID != "" && in.ID != x.ID {
		api.Fail(c, api.Invalid("id", "cannot be changed"))
		return
	}
	x.Name, x.Direction = in.Name, in.Direction
	if in.Active != nil {
		x.Active = *in.Active
	}
	v, err := s.UpdateGate(actx(c), x)
	done(c, http.StatusOK, v, err)
}

func (s *Store) deleteGate(c *gin.Context) {
	x, ok := s.gateAccess(c, api.ActionWrite)
	if ok {
		done(c, http.StatusNoContent, nil, s.DeleteGate(actx(c), x.ID))
	}
}

func (s *Store) rotateGate(c *gin.Context) {
	x, ok := s.gateAccess(c, api.ActionWrite)
	if !ok {
		return
	}
	v, err := s.RotateGatePassword(actx(c), x.ID)
	done(c, http.StatusOK, v, err)
}
