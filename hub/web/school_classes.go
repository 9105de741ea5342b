package web

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/roster"
)

// ClassRow is one class of the classes page.
type ClassRow struct {
	roster.Class
	Teacher string // homeroom teacher's name
	Pupils  int    // active pupils
}

// ClassesData is the classes page (list and create form) and the class
// page (edit form and pupils).
type ClassesData struct {
	SchoolNav
	Classes  []ClassRow
	Teachers []roster.Staff // homeroom choices
	Form     roster.Class
	Edit     bool
	Err      FormErr
	Pupils   []roster.Pupil // the class page
}

// classesData reads the school's classes, staff and pupil counts.
func (s *Server) classesData(c *gin.Context) (*ClassesData, error) {
	ctx := c.Request.Context()
	sc := schoolOf(c)
	d := &ClassesData{SchoolNav: SchoolNav{School: sc, Tab: "classes"},
		Form: roster.Class{Active: true, LateAfterMin: 15, StartTime: "07:00", AbsentCutoff: "09:00"}}
	cls, err := s.d.Roster.Classes(ctx, sc.ID)
	if err != nil {
		return nil, err
	}
	staff, err := s.d.Roster.StaffList(ctx, sc.ID)
	if err != nil {
		return nil, err
	}
	pupils, err := s.d.Roster.Pupils(ctx, sc.ID, roster.PupilFilter{ActiveOnly: true})
	if err != nil {
		return nil, err
	}
	names := map[string]string{}
	for _, st := range staff {
		names[st.ID] = st.FullName
		if st.Active {
			d.Teachers = append(d.Teachers, st)
		}
	}
	count := map[string]int{}
	for _, p := range pupils {
		count[p.ClassID]++
	}
	for _, x := range cls {
		d.Classes = append(d.Classes, ClassRow{Class: x, Teacher: names[x.HomeroomTeacherID], Pupils: count[x.ID]})
	}
	return d, nil
}

func (s *Server) classesPage(c *gin.Context) {
	d, err := s.classesData(c)
	if err != nil {
		s.failErr(c, err)
		return
	}
	pg := s.newPage(c, "sa.classes_title", d)
	if n := c.Query("saved"); n != "" {
		pg.Flash = pg.Tr("sa.class_saved", "class", n)
	}
	s.render(c, http.StatusOK, "school_classes", pg)
}

// classInSchool loads :class and 404s one of another school.
func (s *Server) classInSchool(c *gin.Context) (roster.Class, bool) {
	x, err := s.d.Roster.Class(c.Request.Context(), c.Param("class"))
	if err == nil && x.SchoolID != schoolOf(c).ID {
		err = api.ErrNotFound
	}
	if err != nil {
		s.failErr(c, err)
		return x, false
	}
	return x, true
}

func (s *Server) classPage(c *gin.Context) {
	x, ok := s.classInSchool(c)
	if !ok {
		return
	}
	d, err := s.classesData(c)
	if err == nil {
		d.Pupils, err = s.d.Roster.Pupils(c.Request.Context(), x.SchoolID, roster.PupilFilter{ClassID: x.ID})
	}
	if err != nil {
		s.failErr(c, err)
		return
	}
	d.Form, d.Edit = x, true
	pg := s.newPage(c, "sa.class_title", d)
	pg.Title = pg.Tr("sa.class_title", "class", x.Name)
	s.render(c, http.StatusOK, "school_classes", pg)
}

// classForm reads the class form over x.
func classForm(c *gin.Context, x roster.Class) (roster.Class, error) {
	x.Name = c.PostForm("name")
	x.HomeroomTeacherID = c.PostForm("homeroom_teacher_id")
	x.StartTime, x.AbsentCutoff = c.PostForm("start_time"), c.PostForm("absent_cutoff")
	x.Active = c.PostForm("active") == "1"
	var err error
	if x.Grade, err = strconv.Atoi(strings.TrimSpace(c.PostForm("grade"))); err != nil {
		return x, api.Invalid("grade", "must be a number 0..12")
	}
	if x.LateAfterMin, err = strconv.Atoi(strings.TrimSpace(c.PostForm("late_after_min"))); err != nil {
		return x, api.Invalid("late_after_min", "must be a number of minutes")
	}
	return x, nil
}

// classSave creates a class (POST …/classes, ID from the form; refused
// when the ID exists, as the API does) or updates :class. Through
// roster.Store.PutClass, as POST /schools/{id}/classes and PATCH /classes/{id}.
func (s *Server) classSave(c *gin.Context) {
	ctx := c.Request.Context()
	sc := schoolOf(c)
	x := roster.Class{SchoolID: sc.ID, ID: strings.TrimSpace(c.PostForm("id"))}
	edit := c.Param("class") != ""
	if edit {
		old, ok := s.classInSchool(c)
		if !ok {
			return
		}
		x = old
	}
	x, err := classForm(c, x)
	if err == nil && !edit {
		if _, e := s.d.Roster.Class(ctx, x.ID); e == nil {
			err = &api.Error{Code: api.CodeConflict, Field: "id", Message: "class already exists"}
		}
	}
	if err == nil {
		x, err = s.d.Roster.PutClass(ctx, x)
	}
	if err != nil {
		s.classRefused(c, x, edit, err)
		return
	}
	c.Redirect(http.StatusSeeOther, schoolURL(sc.ID, "classes")+"?saved="+url.QueryEscape(x.Name))
}

// classRefused shows the form again with what was typed and why not.
func (s *Server) classRefused(c *gin.Context, x roster.Class, edit bool, err error) {
	d, derr := s.classesData(c)
	if derr != nil {
		s.failErr(c, derr)
		return
	}
	pg := s.newPage(c, "sa.classes_title", d)
	fe, status, ok := formError(pg, err, "class")
	if !ok {
		s.failErr(c, err)
		return
	}
	d.Form, d.Edit, d.Err = x, edit, fe
	pg.Error = fe.Msg
	if edit {
		pg.Title = pg.Tr("sa.class_title", "class", x.Name)
		d.Pupils, _ = s.d.Roster.Pupils(c.Request.Context(), x.SchoolID, roster.PupilFilter{ClassID: x.ID})
	}
	s.render(c, status, "school_classes", pg)
}
