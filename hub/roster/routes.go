package roster

import (
	"bytes"
	"context"
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

// ---- what every record's handlers share ----

// recordAccess loads and authorizes the record a request names, for action; on
// a failure it has answered (404, 403, ...) and returns false.
type recordAccess[T any] func(c *gin.Context, action string) (T, bool)

// loadRecord reads record id with get, then authorizes action on it (scope says
// where the record lives); on a failure it answers and returns false.
func loadRecord[T any](c *gin.Context, get func(context.Context, string) (T, error), id, action string, scope func(T) api.Access) (T, bool) {
	x, err := get(c.Request.Context(), id)
	if err != nil {
		api.Fail(c, err)
		return x, false
	}
	a := scope(x)
	a.Action = action
	return x, authz(c, a)
}

// showRecord answers a GET with the record, when the caller may read it.
func showRecord[T any](c *gin.Context, acc recordAccess[T]) {
	if x, ok := acc(c, api.ActionRead); ok {
		c.JSON(http.StatusOK, x)
	}
}

// patchRecord answers a PATCH: the record loaded for a write, the body bound
// onto it (bind), stored as the caller (put, audited), 200 with what was
// stored.
func patchRecord[T any](c *gin.Context, acc recordAccess[T], bind func(*gin.Context, T) (T, error), put func(context.Context, T) (T, error)) {
	x, ok := acc(c, api.ActionWrite)
	if !ok {
		return
	}
	x, err := bind(c, x)
	if err == nil {
		x, err = put(actx(c), x)
	}
	done(c, http.StatusOK, x, err)
}

// bindOnto binds the body onto the loaded record, then gives back what keep
// says a PATCH cannot change (the ID, the owning school or pupil).
func bindOnto[T any](keep func(x *T, was T)) func(*gin.Context, T) (T, error) {
	return func(c *gin.Context, x T) (T, error) {
		was := x
		if err := api.BindJSON(c, &x, maxBody); err != nil {
			return x, err
		}
		keep(&x, was)
		return x, nil
	}
}

// deleteRecord answers a DELETE: the record loaded for a write, deleted as the
// caller (del, audited), 204.
func deleteRecord[T any](c *gin.Context, acc recordAccess[T], del func(context.Context, T) error) {
	if x, ok := acc(c, api.ActionWrite); ok {
		done(c, http.StatusNoContent, nil, del(actx(c), x))
	}
}

// createRecord answers a POST: the body bound onto x (the defaults), place sets
// what the path decides and says where the record goes, the write
// authorized there, a record that exists already refused (409, taken),
// the record stored as the caller (put, audited), 201 with what was
// stored.
func createRecord[T any](c *gin.Context, x T, place func(*T) api.Access, exists func(context.Context, T) bool, taken string,
	put func(context.Context, T) (T, error),
) {
	if err := api.BindJSON(c, &x, maxBody); err != nil {
		api.Fail(c, err)
		return
	}
	a := place(&x)
	a.Action = api.ActionWrite
	if !authz(c, a) {
		return
	}
	if exists(c.Request.Context(), x) {
		api.Fail(c, &api.Error{Code: api.CodeConflict, Field: "id", Message: taken})
		return
	}
	v, err := put(actx(c), x)
	done(c, http.StatusCreated, v, err)
}

// listOfSchool answers a GET of a school's records (school_id in the path): the
// read authorized (a names the resource), the school checked to exist,
// then list's result.
func (s *Store) listOfSchool(c *gin.Context, a api.Access, list func(ctx context.Context, school string) (any, error)) {
	a.Action, a.SchoolID = api.ActionRead, c.Param("school_id")
	if !authz(c, a) {
		return
	}
	if err := s.checkSchoolRef(c.Request.Context(), a.SchoolID); err != nil {
		api.Fail(c, err)
		return
	}
	v, err := list(c.Request.Context(), a.SchoolID)
	done(c, http.StatusOK, v, err)
}

// recordExists reports whether get finds the record's id.
func recordExists[T any](get func(context.Context, string) (T, error), id func(T) string) func(context.Context, T) bool {
	return func(ctx context.Context, x T) bool {
		_, err := get(ctx, id(x))
		return err == nil
	}
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

// schoolAccess authorizes on the ID in the path before reading the
// school, so a caller of another school learns nothing of it.
func (s *Store) schoolAccess(c *gin.Context, action string) (School, bool) {
	id := c.Param("school_id")
	if !authz(c, api.Access{Action: action, Resource: "schools", SchoolID: id}) {
		return School{}, false
	}
	x, err := s.School(c.Request.Context(), id)
	if err != nil {
		api.Fail(c, err)
		return x, false
	}
	return x, true
}

func (s *Store) createSchool(c *gin.Context) {
	createRecord(c, School{}, func(x *School) api.Access { return api.Access{Resource: "schools", SchoolID: x.ID} },
		recordExists(s.School, func(x School) string { return x.ID }), "school already exists", s.PutSchool)
}

func (s *Store) getSchool(c *gin.Context) { showRecord(c, s.schoolAccess) }

func (s *Store) patchSchool(c *gin.Context) {
	patchRecord(c, s.schoolAccess, bindOnto(func(x *School, was School) { x.ID = was.ID }), s.PutSchool)
}

// deleteSchool deletes by the ID in the path (DeleteSchool answers 404
// for a school that does not exist).
func (s *Store) deleteSchool(c *gin.Context) {
	id := c.Param("school_id")
	if authz(c, api.Access{Action: api.ActionWrite, Resource: "schools", SchoolID: id}) {
		done(c, http.StatusNoContent, nil, s.DeleteSchool(actx(c), id))
	}
}

// ---- classes ----

func (s *Store) classAccess(c *gin.Context, action string) (Class, bool) {
	return loadRecord(c, s.Class, c.Param("class_id"), action, func(x Class) api.Access {
		return api.Access{Resource: "classes", SchoolID: x.SchoolID, ClassID: x.ID}
	})
}

func (s *Store) listClasses(c *gin.Context) {
	s.listOfSchool(c, api.Access{Resource: "classes"}, func(ctx context.Context, school string) (any, error) { return s.Classes(ctx, school) })
}

func (s *Store) createClass(c *gin.Context) {
	createRecord(c, Class{Active: true, LateAfterMin: 15}, func(x *Class) api.Access {
		x.SchoolID = c.Param("school_id")
		return api.Access{Resource: "classes", SchoolID: x.SchoolID, ClassID: x.ID}
	}, recordExists(s.Class, func(x Class) string { return x.ID }), "class already exists", s.PutClass)
}

func (s *Store) getClass(c *gin.Context) { showRecord(c, s.classAccess) }

func (s *Store) patchClass(c *gin.Context) {
	patchRecord(c, s.classAccess, bindOnto(func(x *Class, was Class) { x.ID, x.SchoolID = was.ID, was.SchoolID }), s.PutClass)
}

func (s *Store) deleteClass(c *gin.Context) {
	deleteRecord(c, s.classAccess, func(ctx context.Context, x Class) error { return s.DeleteClass(ctx, x.ID) })
}

// ---- pupils ----

// pupilByPath loads the pupil the path names and authorizes action on it.
func (s *Store) pupilByPath(c *gin.Context, action string) (Pupil, bool) {
	return loadRecord(c, s.Pupil, c.Param("pupil_id"), action, func(x Pupil) api.Access {
		return api.Access{Resource: "pupils", SchoolID: x.SchoolID, ClassID: x.ClassID, PupilID: x.ID}
	})
}

func (s *Store) listPupils(c *gin.Context) {
	f := PupilFilter{ClassID: c.Query("class_id"), ActiveOnly: c.Query("active") == "1" || c.Query("active") == "true"}
	s.listOfSchool(c, api.Access{Resource: "pupils", ClassID: f.ClassID}, func(ctx context.Context, school string) (any, error) {
		return s.Pupils(ctx, school, f)
	})
}

func (s *Store) createPupil(c *gin.Context) {
	createRecord(c, Pupil{Active: true}, func(x *Pupil) api.Access {
		x.SchoolID = c.Param("school_id")
		return api.Access{Resource: "pupils", SchoolID: x.SchoolID, ClassID: x.ClassID, PupilID: x.ID}
	}, recordExists(s.Pupil, func(x Pupil) string { return x.ID }), "a pupil with this personal ID already exists", s.PutPupil)
}

func (s *Store) getPupil(c *gin.Context) { showRecord(c, s.pupilByPath) }

func (s *Store) patchPupil(c *gin.Context) {
	patchRecord(c, s.pupilByPath, bindOnto(func(x *Pupil, was Pupil) { x.ID, x.SchoolID = was.ID, was.SchoolID }), s.PutPupil)
}

func (s *Store) deletePupil(c *gin.Context) {
	deleteRecord(c, s.pupilByPath, func(ctx context.Context, x Pupil) error { return s.DeletePupil(ctx, x.ID) })
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

// pupilAccess loads pupil id and authorizes action on their guardians.
func (s *Store) pupilAccess(c *gin.Context, id, action string) (Pupil, bool) {
	return loadRecord(c, s.Pupil, id, action, func(x Pupil) api.Access {
		return api.Access{Resource: "guardians", SchoolID: x.SchoolID, ClassID: x.ClassID, PupilID: x.ID}
	})
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

// guardianAccess loads the guardian the path names and authorizes a
// write of its pupil's guardians, whatever the action: the routes of one
// guardian (PATCH, DELETE) are writes.
func (s *Store) guardianAccess(c *gin.Context, _ string) (Guardian, bool) {
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
	patchRecord(c, s.guardianAccess, bindOnto(func(x *Guardian, was Guardian) { x.ID, x.PupilID = was.ID, was.PupilID }), s.PutGuardian)
}

func (s *Store) deleteGuardian(c *gin.Context) {
	deleteRecord(c, s.guardianAccess, func(ctx context.Context, x Guardian) error { return s.DeleteGuardian(ctx, x.ID) })
}

// ---- staff ----

func (s *Store) staffAccess(c *gin.Context, action string) (Staff, bool) {
	return loadRecord(c, s.StaffMember, c.Param("staff_id"), action, func(x Staff) api.Access {
		return api.Access{Resource: "staff", SchoolID: x.SchoolID}
	})
}

func (s *Store) listStaff(c *gin.Context) {
	s.listOfSchool(c, api.Access{Resource: "staff"}, func(ctx context.Context, school string) (any, error) { return s.StaffList(ctx, school) })
}

func (s *Store) createStaff(c *gin.Context) {
	createRecord(c, Staff{Active: true}, func(x *Staff) api.Access {
		x.SchoolID = c.Param("school_id")
		return api.Access{Resource: "staff", SchoolID: x.SchoolID}
	}, recordExists(s.StaffMember, func(x Staff) string { return x.ID }), "staff member already exists", s.PutStaff)
}

func (s *Store) getStaff(c *gin.Context) { showRecord(c, s.staffAccess) }

func (s *Store) patchStaff(c *gin.Context) {
	patchRecord(c, s.staffAccess, bindOnto(func(x *Staff, was Staff) { x.ID, x.SchoolID = was.ID, was.SchoolID }), s.PutStaff)
}

func (s *Store) deleteStaff(c *gin.Context) {
	deleteRecord(c, s.staffAccess, func(ctx context.Context, x Staff) error { return s.DeleteStaff(ctx, x.ID) })
}

// ---- gates ----

func (s *Store) gateAccess(c *gin.Context, action string) (Gate, bool) {
	return loadRecord(c, s.Gate, c.Param("gate_id"), action, func(x Gate) api.Access {
		return api.Access{Resource: "gates", SchoolID: x.SchoolID, GateID: x.ID}
	})
}

func (s *Store) listAllGates(c *gin.Context) {
	if !authz(c, api.Access{Action: api.ActionRead, Resource: "gates"}) {
		return
	}
	v, err := s.Gates(c.Request.Context(), "")
	done(c, http.StatusOK, v, err)
}

func (s *Store) listGates(c *gin.Context) {
	s.listOfSchool(c, api.Access{Resource: "gates"}, func(ctx context.Context, school string) (any, error) { return s.Gates(ctx, school) })
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

func (s *Store) getGate(c *gin.Context) { showRecord(c, s.gateAccess) }

func (s *Store) patchGate(c *gin.Context) { patchRecord(c, s.gateAccess, bindGate, s.UpdateGate) }

// bindGate applies a gateInput body to x: name and direction, active when
// given; the ID cannot change.
func bindGate(c *gin.Context, x Gate) (Gate, error) {
	in := gateInput{Name: x.Name, Direction: x.Direction}
	if err := api.BindJSON(c, &in, maxBody); err != nil {
		return x, err
	}
	if in.ID != "" && in.ID != x.ID {
		return x, api.Invalid("id", "cannot be changed")
	}
	x.Name, x.Direction = in.Name, in.Direction
	if in.Active != nil {
		x.Active = *in.Active
	}
	return x, nil
}

func (s *Store) deleteGate(c *gin.Context) {
	deleteRecord(c, s.gateAccess, func(ctx context.Context, x Gate) error { return s.DeleteGate(ctx, x.ID) })
}

func (s *Store) rotateGate(c *gin.Context) {
	x, ok := s.gateAccess(c, api.ActionWrite)
	if !ok {
		return
	}
	v, err := s.RotateGatePassword(actx(c), x.ID)
	done(c, http.StatusOK, v, err)
}
