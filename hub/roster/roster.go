// Package roster is the school roster: schools, classes (grade, homeroom
// teacher, timetable), pupils (12-digit personal ID — mã định danh),
// guardians, staff and gates (with bcrypt-hashed device credentials). It
// provides the store, the CSV import/export of pupils with row-level error
// reports, and the /api/v1 CRUD routes.
//
// CSV import policy: ALL-OR-NOTHING PER FILE. Every row is validated first
// (including cross-row checks such as duplicate IDs); if any row has an
// error, nothing is written and the report lists every error with its line,
// field and reason. Only a clean file is applied, in one transaction.
package roster

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/wire"
	"golang.org/x/crypto/bcrypt"
)

// School is one school.
type School struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	District string `json:"district"`
	Level    string `json:"level"`
	Timezone string `json:"timezone"`
}

// Class is one class with its timetable.
type Class struct {
	ID                string `json:"id"`
	SchoolID          string `json:"school_id"`
	Name              string `json:"name"`
	Grade             int    `json:"grade"`
	HomeroomTeacherID string `json:"homeroom_teacher_id,omitempty"`
	StartTime         string `json:"start_time"`     // HH:MM local
	LateAfterMin      int    `json:"late_after_min"` // late when arriving after start+this
	AbsentCutoff      string `json:"absent_cutoff"`  // HH:MM local; not arrived by then = absent
	Active            bool   `json:"active"`
}

// Pupil is one pupil; ID is the 12-digit personal ID.
type Pupil struct {
	ID               string `json:"id"`
	SchoolID         string `json:"school_id"`
	ClassID          string `json:"class_id,omitempty"`
	FullName         string `json:"full_name"`
	DateOfBirth      string `json:"date_of_birth,omitempty"`
	Gender           string `json:"gender,omitempty"`
	Active           bool   `json:"active"`
	ManualAttendance bool   `json:"manual_attendance"`
	Source           string `json:"source"`
}

// Guardian is a pupil's parent or guardian.
type Guardian struct {
	ID       int64  `json:"id"`
	PupilID  string `json:"pupil_id"`
	FullName string `json:"full_name"`
	Phone    string `json:"phone,omitempty"`
	Email    string `json:"email,omitempty"`
	Relation string `json:"relation,omitempty"`
}

// Staff is a teacher or admin.
type Staff struct {
	ID       string `json:"id"`
	SchoolID string `json:"school_id"`
	FullName string `json:"full_name"`
	Email    string `json:"email,omitempty"`
	Phone    string `json:"phone,omitempty"`
	Role     string `json:"role"` // teacher or admin
	Active   bool   `json:"active"`
}

// Gate is a gate device with its live status.
type Gate struct {
	ID          string `json:"id"`
	SchoolID    string `json:"school_id"`
	Name        string `json:"name"`
	Direction   string `json:"direction"`
	Username    string `json:"username"`
	Active      bool   `json:"active"`
	Online      bool   `json:"online"`
	LastSeenAt  int64  `json:"last_seen_at,omitempty"` // hub clock, Unix ms
	ClockSkewMS int64  `json:"clock_skew_ms"`
	// From the last heartbeat.
	LastHeartbeat *wire.Heartbeat `json:"last_heartbeat,omitempty"`
	OutboxDepth   int             `json:"outbox_depth"`
}

// GateCredentials is returned once when a gate is created or its password
// rotated; only the bcrypt hash is stored.
type GateCredentials struct {
	Gate     Gate   `json:"gate"`
	Username string `json:"username"`
	Password string `json:"password"`
}

// ChangeFunc is told after a committed roster change that can alter a
// school's gallery (a pupil deactivated, deleted, set to manual attendance,
// moved to another school).
type ChangeFunc func(ctx context.Context, schoolID string)

// Store is the school roster (schools, classes, pupils, guardians, staff,
// gates) in the hub's SQLite database (hub/store.DB); it holds no data of
// its own. Every write is audited (audit.go) as the actor of its context
// (WithActor).
type Store struct {
	db    *store.DB
	audit *audit.Log
	log   *slog.Logger
	now   func() time.Time
	// OfflineAfter: a gate not seen for this long is reported offline.
	OfflineAfter time.Duration
	// BcryptCost for gate passwords.
	BcryptCost int

	mu   sync.Mutex
	subs []ChangeFunc
}

// New returns the roster store.
func New(db *store.DB, log *slog.Logger, now func() time.Time) *Store {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	return &Store{db: db, audit: audit.New(db, log, now), log: log, now: now, OfflineAfter: 2 * time.Minute, BcryptCost: bcrypt.DefaultCost}
}

// Subscribe registers fn for gallery-relevant roster changes.
func (s *Store) Subscribe(fn ChangeFunc) {
	s.mu.Lock()
	s.subs = append(s.subs, fn)
	s.mu.Unlock()
}

func (s *Store) changed(ctx context.Context, school string) {
	s.mu.Lock()
	subs := append([]ChangeFunc(nil), s.subs...)
	s.mu.Unlock()
	for _, fn := range subs {
		fn(ctx, school)
	}
}

// ---- validation helpers ----

var (
	hhmmRe  = regexp.MustCompile(`^([01][0-9]|2[0-3]):[0-5][0-9]$`)
	dateRe  = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`)
	phoneRe = regexp.MustCompile(`^\+?[0-9 .-]{8,20}$`)
	emailRe = regexp.MustCompile(`^[^@\s]+@[^@\s]+\.[^@\s]+$`)
)

// checkText validates free text: valid UTF-8, no control characters, not
// a spreadsheet formula, at most max runes.
func checkText(field, v string, required bool, max int) error {
	if required && strings.TrimSpace(v) == "" {
		return api.Invalid(field, "is required")
	}
	if !utf8.ValidString(v) {
		return api.Invalid(field, "is not valid UTF-8 text (save the file as UTF-8)")
	}
	if utf8.RuneCountInString(v) > max {
		return api.Invalid(field, "is longer than %d characters", max)
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f {
			return api.Invalid(field, "contains a control character")
		}
	}
	if v != "" && strings.ContainsRune("=+-@", rune(v[0])) {
		return api.Invalid(field, "must not start with %q (looks like a spreadsheet formula)", v[:1])
	}
	return nil
}

func checkDate(field, v string) error {
	if v == "" {
		return nil
	}
	if !dateRe.MatchString(v) {
		return api.Invalid(field, "must be YYYY-MM-DD, got %q", clip(v))
	}
	t, err := time.Parse("2006-01-02", v)
	if err != nil {
		return api.Invalid(field, "is not a real date: %q", clip(v))
	}
	if t.Year() < 1900 || t.After(time.Now().AddDate(1, 0, 0)) {
		return api.Invalid(field, "is out of range: %q", clip(v))
	}
	return nil
}

func checkHHMM(field, v string) error {
	if !hhmmRe.MatchString(v) {
		return api.Invalid(field, "must be HH:MM (24 h), got %q", clip(v))
	}
	return nil
}

func checkPhone(field, v string) error {
	if v != "" && !phoneRe.MatchString(v) {
		return api.Invalid(field, "is not a phone number: %q", clip(v))
	}
	return nil
}

func checkEmail(field, v string) error {
	if v != "" && (!emailRe.MatchString(v) || len(v) > 254) {
		return api.Invalid(field, "is not an e-mail address: %q", clip(v))
	}
	return nil
}

func checkID(field, v string) error {
	if !wire.ValidID(v) {
		return api.Invalid(field, "must be 1–64 lowercase letters, digits, '-' or '_', got %q", clip(v))
	}
	return nil
}

// CheckPersonalID validates a pupil's 12-digit personal ID (mã định danh).
func CheckPersonalID(field, v string) error {
	if !wire.ValidPersonalID(v) {
		return api.Invalid(field, "must be the 12-digit personal ID (mã định danh), got %q", clip(v))
	}
	return nil
}

// clip bounds a value quoted in an error to 40 characters and an ellipsis.
func clip(s string) string { return conf.Truncate(s, 40, conf.Runes, "…") }

var genders = map[string]bool{"": true, "male": true, "female": true, "other": true}
var levels = map[string]bool{"": true, "preschool": true, "primary": true, "lower_secondary": true, "upper_secondary": true}

// Validate normalises (NormalizeText) and checks a school.
func (x *School) Validate() error {
	x.Name, x.District = NormalizeText(x.Name), NormalizeText(x.District)
	if x.Timezone == "" {
		x.Timezone = "Asia/Ho_Chi_Minh"
	}
	if err := checkID("id", x.ID); err != nil {
		return err
	}
	if err := checkText("name", x.Name, true, 200); err != nil {
		return err
	}
	if err := checkText("district", x.District, false, 200); err != nil {
		return err
	}
	if !levels[x.Level] {
		return api.Invalid("level", "must be preschool, primary, lower_secondary or upper_secondary")
	}
	if _, err := time.LoadLocation(x.Timezone); err != nil {
		return api.Invalid("timezone", "unknown time zone %q", clip(x.Timezone))
	}
	return nil
}

// Validate normalises (NormalizeText) and checks a class.
func (x *Class) Validate() error {
	x.Name = NormalizeText(x.Name)
	if x.StartTime == "" {
		x.StartTime = "07:00"
	}
	if x.AbsentCutoff == "" {
		x.AbsentCutoff = "09:00"
	}
	if err := checkID("id", x.ID); err != nil {
		return err
	}
	if err := checkText("name", x.Name, true, 100); err != nil {
		return err
	}
	if x.Grade < 0 || x.Grade > 12 {
		return api.Invalid("grade", "must be 0 (preschool) to 12")
	}
	if err := checkHHMM("start_time", x.StartTime); err != nil {
		return err
	}
	if err := checkHHMM("absent_cutoff", x.AbsentCutoff); err != nil {
		return err
	}
	if x.LateAfterMin < 0 || x.LateAfterMin > 240 {
		return api.Invalid("late_after_min", "must be 0..240")
	}
	if x.AbsentCutoff < x.StartTime {
		return api.Invalid("absent_cutoff", "must not be before start_time")
	}
	return nil
}

// Validate normalises (NormalizeText) and checks a pupil.
func (x *Pupil) Validate() error {
	x.FullName = NormalizeText(x.FullName)
	if err := CheckPersonalID("id", x.ID); err != nil {
		return err
	}
	if err := checkText("full_name", x.FullName, true, 200); err != nil {
		return err
	}
	if err := checkDate("date_of_birth", x.DateOfBirth); err != nil {
		return err
	}
	if !genders[x.Gender] {
		return api.Invalid("gender", "must be male, female or other")
	}
	if x.ClassID != "" {
		if err := checkID("class_id", x.ClassID); err != nil {
			return err
		}
	}
	if x.Source == "" {
		x.Source = "local"
	}
	return nil
}

// Validate normalises (NormalizeText) and checks a guardian.
func (x *Guardian) Validate() error {
	x.FullName, x.Relation = NormalizeText(x.FullName), NormalizeText(x.Relation)
	x.Phone, x.Email = strings.TrimSpace(x.Phone), strings.TrimSpace(x.Email)
	if err := checkText("full_name", x.FullName, true, 200); err != nil {
		return err
	}
	if err := checkPhone("phone", x.Phone); err != nil {
		return err
	}
	if err := checkEmail("email", x.Email); err != nil {
		return err
	}
	return checkText("relation", x.Relation, false, 50)
}

// Validate normalises (NormalizeText) and checks a staff member.
func (x *Staff) Validate() error {
	x.FullName = NormalizeText(x.FullName)
	x.Phone, x.Email = strings.TrimSpace(x.Phone), strings.TrimSpace(x.Email)
	if err := checkID("id", x.ID); err != nil {
		return err
	}
	if err := checkText("full_name", x.FullName, true, 200); err != nil {
		return err
	}
	if err := checkEmail("email", x.Email); err != nil {
		return err
	}
	if err := checkPhone("phone", x.Phone); err != nil {
		return err
	}
	if x.Role != "teacher" && x.Role != "admin" {
		return api.Invalid("role", "must be teacher or admin")
	}
	return nil
}

// Validate normalises (NormalizeText) and checks a gate.
func (x *Gate) Validate() error {
	x.Name = NormalizeText(x.Name)
	if x.Direction == "" {
		x.Direction = wire.DirectionIn
	}
	if err := checkID("id", x.ID); err != nil {
		return err
	}
	if err := checkText("name", x.Name, false, 100); err != nil {
		return err
	}
	if x.Direction != wire.DirectionIn && x.Direction != wire.DirectionOut {
		return api.Invalid("direction", "must be in or out")
	}
	return nil
}

// dbErr maps SQLite constraint failures to API codes.
func dbErr(op string, err error) error {
	if err == nil {
		return nil
	}
	var ae *api.Error
	if errors.As(err, &ae) {
		return err
	}
	if errors.Is(err, sql.ErrNoRows) {
		return &api.Error{Code: api.CodeNotFound, Message: op + ": not found"}
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "UNIQUE constraint failed"), strings.Contains(msg, "PRIMARY KEY"):
		return &api.Error{Code: api.CodeConflict, Message: op + ": already exists", Err: err}
	case strings.Contains(msg, "FOREIGN KEY constraint failed"):
		return &api.Error{Code: api.CodeConflict, Message: op + ": refers to a missing record or is still in use", Err: err}
	case strings.Contains(msg, "CHECK constraint failed"):
		return &api.Error{Code: api.CodeInvalid, Message: op + ": value out of range", Err: err}
	}
	return fmt.Errorf("roster: %s: %w", op, err)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

const pwAlphabet = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"

// NewPassword returns a random 24-character device password.
func NewPassword() string {
	var b strings.Builder
	for i := 0; i < 24; i++ {
		n, err := rand.Int(rand.Reader, big.NewInt(int64(len(pwAlphabet))))
		if err != nil {
			panic("roster: crypto/rand: " + err.Error())
		}
		b.WriteByte(pwAlphabet[n.Int64()])
	}
	return b.String()
}
