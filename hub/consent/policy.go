package consent

import (
	"context"
	"database/sql"
	_ "embed"
	"errors"
	"fmt"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/auth"
	"github.com/gin-gonic/gin"
)

// ActionPolicy is the audit action of a changed school consent policy.
const ActionPolicy = "consent_policy"

// Policy is a school's consent policy (table consent_policies): the scope
// a new consent gets when the request leaves it out. A school with no
// row has the zero Policy (gate templates off).
type Policy struct {
	SchoolID string `json:"school_id"`
	// GateTemplates is the default of scope_gate_templates for new
	// consents: gate captures may be kept as face templates. Consents
	// already recorded keep their own scope until renewed.
	GateTemplates bool   `json:"gate_templates"`
	UpdatedAt     int64  `json:"updated_at,omitempty"` // Unix ms; 0 = never set
	UpdatedBy     string `json:"updated_by,omitempty"`
}

type rowQuerier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func schoolPolicy(ctx context.Context, q rowQuerier, school string) (Policy, error) {
	p := Policy{SchoolID: school}
	err := q.QueryRowContext(ctx, `SELECT gate_templates, updated_at, updated_by FROM consent_policies WHERE school_id = ?`, school).
		Scan(&p.GateTemplates, &p.UpdatedAt, &p.UpdatedBy)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return p, fmt.Errorf("consent: policy: %w", err)
	}
	return p, nil
}

// SchoolPolicy returns school's consent policy; an unknown school is a
// not_found error.
func (r *Registry) SchoolPolicy(ctx context.Context, school string) (Policy, error) {
	if err := schoolExists(ctx, r.db.R, school); err != nil {
		return Policy{}, err
	}
	return schoolPolicy(ctx, r.db.R, school)
}

// SetSchoolPolicy sets school's consent policy, audited (ActionPolicy,
// with the previous value). It changes no consent already recorded.
func (r *Registry) SetSchoolPolicy(ctx context.Context, actor, school string, gateTemplates bool) (Policy, error) {
	var p Policy
	err := r.db.Tx(ctx, func(tx *sql.Tx) error {
		if err := schoolExists(ctx, tx, school); err != nil {
			return err
		}
		prev, err := schoolPolicy(ctx, tx, school)
		if err != nil {
			return err
		}
		p = Policy{SchoolID: school, GateTemplates: gateTemplates, UpdatedAt: r.now().UnixMilli(), UpdatedBy: actor}
		if _, err := tx.ExecContext(ctx, `INSERT INTO consent_policies(school_id, gate_templates, updated_at, updated_by) VALUES (?, ?, ?, ?)
			ON CONFLICT(school_id) DO UPDATE SET gate_templates = excluded.gate_templates, updated_at = excluded.updated_at,
			updated_by = excluded.updated_by`, school, gateTemplates, p.UpdatedAt, actor); err != nil {
			return fmt.Errorf("consent: policy: %w", err)
		}
		detail := map[string]any{"gate_templates": gateTemplates, "previous_gate_templates": prev.GateTemplates}
		return r.audit.RecordTx(ctx, tx, actor, ActionPolicy, "school:"+school, detail, "")
	})
	return p, err
}

func schoolExists(ctx context.Context, q rowQuerier, school string) error {
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM schools WHERE id = ?`, school).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return &api.Error{Code: api.CodeNotFound, Message: "unknown school " + school}
	}
	if err != nil {
		return fmt.Errorf("consent: %w", err)
	}
	return nil
}

//go:embed openapi.json
var openapiPaths []byte

// OpenAPIPaths is the OpenAPI "paths" fragment of the policy routes.
func OpenAPIPaths() []byte { return openapiPaths }

// policyRoutes registers, for admins of the school:
//
//	GET /schools/:school_id/consent-policy  the school's consent policy
//	PUT /schools/:school_id/consent-policy  {"gate_templates": bool}
func (r *Registry) policyRoutes(g gin.IRouter) {
	schoolOK := func(c *gin.Context) {
		if err := api.Authorize(c, api.Access{Action: api.ActionWrite, Resource: "consents", SchoolID: c.Param("school_id")}); err != nil {
			api.Fail(c, err)
			return
		}
		c.Next()
	}
	g.GET("/schools/:school_id/consent-policy", auth.Require(auth.PermConsent), schoolOK, func(c *gin.Context) {
		p, err := r.SchoolPolicy(c.Request.Context(), c.Param("school_id"))
		if err != nil {
			api.Fail(c, err)
			return
		}
		api.JSON(c, p)
	})
	g.PUT("/schools/:school_id/consent-policy", auth.Require(auth.PermConsent), schoolOK, func(c *gin.Context) {
		var req struct {
			GateTemplates *bool `json:"gate_templates"`
		}
		if err := api.BindJSON(c, &req, 1<<10); err != nil {
			api.Fail(c, err)
			return
		}
		if req.GateTemplates == nil {
			api.Fail(c, api.Invalid("gate_templates", "is required (true or false)"))
			return
		}
		p, err := r.SetSchoolPolicy(c.Request.Context(), api.Actor(c), c.Param("school_id"), *req.GateTemplates)
		if err != nil {
			api.Fail(c, err)
			return
		}
		api.JSON(c, p)
	})
}
