// Package api is the hub's shared HTTP plumbing: the one gin engine
// (Server: recovery, logging, /api/v1, /healthz, /metrics and the served
// OpenAPI document), the one place where error codes become HTTP statuses
// (Error, Fail), the access-control hook (Authorizer) and the login
// lockout (Lockout). The routes themselves live in the components that
// own them (hub/roster, hub/attendance, hub/enrol, ...).
package api

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/http"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/errkind"
	"github.com/gin-gonic/gin"
)

// Code classifies an API error. Every component returns errors carrying a
// Code (wrapped with %w is fine); Fail maps it to an HTTP status here and
// only here.
type Code string

// Error codes. Add new ones here together with their status in statusOf.
const (
	CodeInvalid         Code = "invalid"         // 400: bad input; Field names it
	CodeUnauthenticated Code = "unauthenticated" // 401: no or wrong credentials
	CodeForbidden       Code = "forbidden"       // 403: authenticated but not allowed
	CodeNotFound        Code = "not_found"       // 404
	CodeConflict        Code = "conflict"        // 409: duplicate or in use
	CodePrecondition    Code = "precondition"    // 412: consent missing, stale version…
	CodeTooLarge        Code = "too_large"       // 413
	CodeUnsupported     Code = "unsupported"     // 415
	CodeRateLimited     Code = "rate_limited"    // 429
	CodeUnavailable     Code = "unavailable"     // 503: shutting down, dependency down
	CodeInternal        Code = "internal"        // 500
)

var statusOf = map[Code]int{
	CodeInvalid:         http.StatusBadRequest,
	CodeUnauthenticated: http.StatusUnauthorized,
	CodeForbidden:       http.StatusForbidden,
	CodeNotFound:        http.StatusNotFound,
	CodeConflict:        http.StatusConflict,
	CodePrecondition:    http.StatusPreconditionFailed,
	CodeTooLarge:        http.StatusRequestEntityTooLarge,
	CodeUnsupported:     http.StatusUnsupportedMediaType,
	CodeRateLimited:     http.StatusTooManyRequests,
	CodeUnavailable:     http.StatusServiceUnavailable,
	CodeInternal:        http.StatusInternalServerError,
}

// Status returns the HTTP status of a code (500 for an unknown one).
func (c Code) Status() int {
	if s, ok := statusOf[c]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// Error is an API error: a code, an optional field, a message safe to show
// to the caller, and the cause (logged, never sent).
type Error struct {
	Code    Code
	Field   string
	Message string
	Details any // optional JSON-able details, e.g. CSV row errors
	Err     error
}

func (e *Error) Error() string {
	s := string(e.Code)
	if e.Field != "" {
		s += ": " + e.Field
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf builds an *Error with a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap builds an *Error with code and message around a cause.
func Wrap(code Code, err error, msg string) *Error {
	return &Error{Code: code, Message: msg, Err: err}
}

// Invalid is a 400 naming a field.
func Invalid(field, format string, args ...any) *Error {
	return &Error{Code: CodeInvalid, Field: field, Message: fmt.Sprintf(format, args...)}
}

// Sentinel errors for errors.Is-style checks in other packages.
var (
	ErrNotFound        = &Error{Code: CodeNotFound, Message: "not found"}
	ErrUnauthenticated = &Error{Code: CodeUnauthenticated, Message: "authentication required"}
	ErrForbidden       = &Error{Code: CodeForbidden, Message: "forbidden"}
	ErrConflict        = &Error{Code: CodeConflict, Message: "conflict"}
)

// Is lets errors.Is(err, api.ErrNotFound) (or any *Error carrying only a
// code) match every *Error with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && t.Field == "" && t.Err == nil && t.Details == nil
}

// CodeOf classifies any error: *Error by its code, *conf.FieldError and
// errkind.Invalid as invalid, sql.ErrNoRows as not found, context
// cancellation as unavailable, everything else internal.
func CodeOf(err error) Code {
	var ae *Error
	if errors.As(err, &ae) {
		return ae.Code
	}
	var fe *conf.FieldError
	if errors.As(err, &fe) {
		return CodeInvalid
	}
	switch errkind.Of(err) {
	case errkind.Invalid, errkind.EmptyImage, errkind.CorruptImage:
		return CodeInvalid
	case errkind.TooLarge:
		return CodeTooLarge
	case errkind.Unsupported:
		return CodeUnsupported
	case errkind.ModelMissing, errkind.ModelCorrupt, errkind.Closed:
		return CodeUnavailable
	}
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return CodeNotFound
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return CodeUnavailable
	}
	return CodeInternal
}

// Body is the JSON error body of every failed request.
type Body struct {
	Error   Code   `json:"error"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
	Details any    `json:"details,omitempty"`
}

// BodyOf builds the JSON body for err (internal causes are not exposed).
func BodyOf(err error) (int, Body) {
	code := CodeOf(err)
	b := Body{Error: code}
	var ae *Error
	var fe *conf.FieldError
	switch {
	case errors.As(err, &ae):
		b.Field, b.Message, b.Details = ae.Field, ae.Message, ae.Details
		if b.Message == "" && code != CodeInternal && ae.Err != nil {
			b.Message = ae.Err.Error()
		}
	case errors.As(err, &fe):
		b.Field, b.Message = fe.Field, fe.Reason
	case code == CodeNotFound:
		b.Message = "not found"
	case code == CodeInternal:
		b.Message = "internal error"
	default:
		b.Message = err.Error()
	}
	if b.Message == "" {
		b.Message = http.StatusText(code.Status())
	}
	return code.Status(), b
}

// Fail aborts the request with err mapped to its status and JSON body. It
// logs 5xx errors once, here at the boundary (through the logger set by
// the server middleware).
func Fail(c *gin.Context, err error) {
	status, body := BodyOf(err)
	if status >= 500 {
		if l := loggerOf(c); l != nil {
			l.Error("request failed", "method", c.Request.Method, "path", c.FullPath(), "status", status, "err", err)
		}
	}
	if status == http.StatusUnauthorized && c.Writer.Header().Get("WWW-Authenticate") == "" {
		c.Header("WWW-Authenticate", `Basic realm="diemdanh"`)
	}
	c.AbortWithStatusJSON(status, body)
}
