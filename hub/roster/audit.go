package roster

import (
	"context"
	"database/sql"
	"errors"
	"reflect"
	"strings"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/gin-gonic/gin"
)

// Every roster write records one audit entry (hub/audit) in the
// transaction of the write, so the entry commits or rolls back with it: a
// refused write records nothing. Entries name IDs and which fields
// changed, never values (names, phone numbers and e-mail addresses are
// personal data). The subject is the record ("school:…", "class:…",
// "pupil:…", "staff:…", "gate:…"; a guardian's is its pupil, with
// guardian_id in the detail), so the entry carries the record's school.
const (
	ActionSchoolCreate   = "school_create"
	ActionSchoolUpdate   = "school_update"
	ActionSchoolDelete   = "school_delete"
	ActionClassCreate    = "class_create"
	ActionClassUpdate    = "class_update"
	ActionClassDelete    = "class_delete"
	ActionPupilCreate    = "pupil_create"
	ActionPupilUpdate    = "pupil_update"
	ActionPupilDelete    = "pupil_delete"
	ActionPupilImport    = "pupil_import" // one per applied CSV file, with counts
	ActionGuardianCreate = "guardian_create"
	ActionGuardianUpdate = "guardian_update"
	ActionGuardianDelete = "guardian_delete"
	ActionStaffCreate    = "staff_create"
	ActionStaffUpdate    = "staff_update"
	ActionStaffDelete    = "staff_delete"
	ActionGateCreate     = "gate_create"
	ActionGateUpdate     = "gate_update"
	ActionGateDelete     = "gate_delete"
	ActionGatePassword   = "gate_password" // set or rotated; the password is never recorded
)

// SystemActor is the actor of a write whose context names none (the
// hub's own jobs, the demo set-up).
const SystemActor = "system"

// Actor is who makes a roster change and from where, for its audit entry.
type Actor struct {
	ID string // e.g. "admin:lan" (api.Principal's ActorID), "system"
	IP string // the client's address; "" for the hub's own jobs
}

type actorKey struct{}

// WithActor returns ctx carrying the actor (id) and client address (ip)
// that the store's writes under it are audited as. Without one, writes are
// audited as SystemActor.
func WithActor(ctx context.Context, id, ip string) context.Context {
	return context.WithValue(ctx, actorKey{}, Actor{ID: id, IP: ip})
}

// ActorFrom returns the actor WithActor put in ctx, else SystemActor.
func ActorFrom(ctx context.Context) Actor {
	if a, ok := ctx.Value(actorKey{}).(Actor); ok && a.ID != "" {
		return a
	}
	return Actor{ID: SystemActor}
}

// actx is the context of a store write from an API request: the request's
// context with the caller's actor and client address. Not c itself:
// database/sql watches a query's context from a goroutine of its own, and
// gin reuses c for the next request once the handler returns.
func actx(c *gin.Context) context.Context {
	return WithActor(c.Request.Context(), api.Actor(c), c.ClientIP())
}

// record appends the audit entry of a write inside its transaction.
func (s *Store) record(ctx context.Context, tx *sql.Tx, action, subject string, detail any) error {
	a := ActorFrom(ctx)
	return s.audit.RecordTx(ctx, tx, a.ID, action, subject, detail, a.IP)
}

// recordPut records a create (existed false) or an update with the JSON
// names of the fields that differ between old and x; extra goes into the
// detail as well (IDs only).
func (s *Store) recordPut(ctx context.Context, tx *sql.Tx, create, update, subject string, existed bool, old, x any, extra map[string]any) error {
	detail := map[string]any{}
	for k, v := range extra {
		detail[k] = v
	}
	action := create
	if existed {
		action = update
		detail["fields"] = changedFields(old, x)
	}
	return s.record(ctx, tx, action, subject, detail)
}

// changedFields lists the JSON names of the comparable fields that differ
// between two structs of one type: which fields changed, not their values.
func changedFields(old, x any) []string {
	a, b := reflect.ValueOf(old), reflect.ValueOf(x)
	out := []string{}
	if a.Kind() != reflect.Struct || a.Type() != b.Type() {
		return out
	}
	for i := 0; i < a.NumField(); i++ {
		f := a.Type().Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" || !f.IsExported() || !f.Type.Comparable() || f.Type.Kind() == reflect.Pointer {
			continue
		}
		if a.Field(i).Interface() != b.Field(i).Interface() {
			out = append(out, name)
		}
	}
	return out
}

// found turns a single-row lookup's error into whether the row exists.
func found(err error) (bool, error) {
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	}
	return false, err
}
