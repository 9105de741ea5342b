package api

import (
	"errors"
	"net"

	"github.com/gin-gonic/gin"
)

func errorsAs(err error, target any) bool { return errors.As(err, target) }

// Actions of an Access.
const (
	ActionRead  = "read"
	ActionWrite = "write"
)

// Access describes what a request is about to do, so an Authorizer can
// decide with least privilege: a teacher only their classes, a parent only
// their children, a gate only its own gallery. Empty IDs mean "not scoped
// to one"; for example listing all schools.
type Access struct {
	Action   string // ActionRead or ActionWrite
	Resource string // schools, classes, pupils, guardians, staff, gates, events, attendance, overrides, …
	SchoolID string
	ClassID  string
	PupilID  string
	GateID   string
}

// Authorizer is the consumer-side access-control hook. hub/auth
// implements it (sessions, roles); it returns nil to allow, an *Error with
// CodeUnauthenticated or CodeForbidden to refuse.
type Authorizer interface {
	Authorize(c *gin.Context, a Access) error
}

// Principal is an optional interface an Authorizer may store in the gin
// context under PrincipalKey so handlers can record who did something.
type Principal interface {
	ActorID() string
}

// PrincipalKey is the gin context key of the authenticated Principal.
const PrincipalKey = "diemdanh.principal"

// Actor returns the actor ID of the request: the Principal's ActorID when
// an Authorizer set one, else "local" (loopback-only mode).
func Actor(c *gin.Context) string {
	if v, ok := c.Get(PrincipalKey); ok {
		if p, ok := v.(Principal); ok {
			return p.ActorID()
		}
	}
	return "local"
}

// LocalOnly is the Authorizer used until real accounts exist: it allows
// requests from loopback addresses and refuses everything else. The hub
// also binds to 127.0.0.1 while it is in use.
type LocalOnly struct{}

// Authorize implements Authorizer.
func (LocalOnly) Authorize(c *gin.Context, _ Access) error {
	host, _, err := net.SplitHostPort(c.Request.RemoteAddr)
	if err != nil {
		host = c.Request.RemoteAddr
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return &Error{Code: CodeForbidden, Message: "the API is restricted to localhost until accounts are configured"}
}

// Authorize runs the server's Authorizer for this request. Handlers call it
// once they know the scope of what they touch; on error they return it to
// Fail.
func Authorize(c *gin.Context, a Access) error {
	v, ok := c.Get(keyAuth)
	if !ok {
		return &Error{Code: CodeForbidden, Message: "no authorizer configured"}
	}
	auth, ok := v.(Authorizer)
	if !ok || auth == nil {
		return &Error{Code: CodeForbidden, Message: "no authorizer configured"}
	}
	return auth.Authorize(c, a)
}
