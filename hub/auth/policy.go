package auth

import (
	"strings"

	"github.com/diemdanh/diemdanh/hub/audit"
)

// Perm is a permission checked by Require.
type Perm string

// Permissions.
const (
	PermAccounts    Perm = "accounts"     // create, disable accounts and reset their passwords
	PermRoster      Perm = "roster"       // edit schools, classes, pupils, guardians, gates
	PermEnrol       Perm = "enrol"        // enrol faces, review templates
	PermConsent     Perm = "consent"      // record and withdraw consent
	PermPhotos      Perm = "photos"       // view stored enrolment photos (audited)
	PermAudit       Perm = "audit"        // read the audit log, export the processing record
	PermFeedback    Perm = "feedback"     // mark a recognition "not this pupil"
	PermClassView   Perm = "class_view"   // see classes they teach (scoped by CanSeeClass)
	PermOwnChildren Perm = "own_children" // see their own children (scoped by CanSeePupil)
	PermGallery     Perm = "gallery"      // fetch their own school's gallery (gates)
)

var rolePerms = map[Role][]Perm{
	RoleAdmin:   {PermAccounts, PermRoster, PermEnrol, PermConsent, PermPhotos, PermAudit, PermFeedback, PermClassView},
	RoleTeacher: {PermFeedback, PermClassView},
	RoleParent:  {PermOwnChildren},
	RoleGate:    {PermGallery},
}

// Has reports whether p's role grants perm.
func (p *Principal) Has(perm Perm) bool {
	for _, x := range rolePerms[p.Role] {
		if x == perm {
			return true
		}
	}
	return false
}

// AuditScope implements audit.Reader: what of the audit log p may read
// (GET /api/v1/audit, /api/v1/audit/processing-record). A hub-wide admin
// (no school) reads every entry; an admin of one school only the entries
// about that school; everyone else (teachers, parents, gates, an account
// that must change its password first) nothing.
func (p *Principal) AuditScope() audit.Scope {
	if p == nil || p.MustChange || !p.Has(PermAudit) || p.Role != RoleAdmin {
		return audit.Scope{}
	}
	if p.SchoolID == "" {
		return audit.Scope{All: true}
	}
	return audit.Scope{School: p.SchoolID}
}

// Rule opens a route (method and gin path pattern) to roles. Patterns are
// gin full paths; a parameter segment (":id") matches any parameter
// segment whatever its name, and a trailing "*" matches any rest.
type Rule struct {
	Method string // "*" for any
	Path   string
	Roles  []Role
	// Public routes need no login (login, health, static files).
	Public bool
	// DuringPasswordChange routes stay open to accounts that must change
	// their one-time password first.
	DuringPasswordChange bool
}

func (r Rule) allows(role Role) bool {
	for _, x := range r.Roles {
		if x == role {
			return true
		}
	}
	return false
}

var (
	anyAccount = []Role{RoleAdmin, RoleTeacher, RoleParent}
	staff      = []Role{RoleAdmin, RoleTeacher}
	family     = []Role{RoleAdmin, RoleParent}
	adminOnly  = []Role{RoleAdmin}
)

// DefaultRules is the route policy. The first matching rule wins; a route
// no rule matches is open to admins only (deny by default), so a new route
// is never silently open to teachers, parents or gates. Each rule only
// lets a role reach the handler: handlers still scope what it sees through
// api.Authorize (Authorizer) or CanSeeClass/CanSeePupil.
var DefaultRules = []Rule{
	// Public.
	{Method: "GET", Path: "/healthz", Public: true},
	// Prometheus scraping: counters only, no personal data.
	{Method: "GET", Path: "/metrics", Public: true},
	{Method: "GET", Path: "/api/v1/openapi.json", Public: true},
	{Method: "POST", Path: "/api/v1/auth/login", Public: true},
	{Method: "*", Path: "/login", Public: true},
	{Method: "GET", Path: "/static/*", Public: true},
	{Method: "GET", Path: "/assets/*", Public: true},
	{Method: "GET", Path: "/favicon.ico", Public: true},
	{Method: "GET", Path: "/sw.js", Public: true},
	{Method: "GET", Path: "/manifest.webmanifest", Public: true},
	{Method: "GET", Path: "/", Public: true},
	{Method: "GET", Path: "/lang/*", Public: true},
	// Own account, also while a one-time password must be changed.
	{Method: "GET", Path: "/api/v1/auth/me", Roles: []Role{RoleAdmin, RoleTeacher, RoleParent, RoleGate}, DuringPasswordChange: true},
	{Method: "POST", Path: "/api/v1/auth/logout", Roles: anyAccount, DuringPasswordChange: true},
	{Method: "POST", Path: "/api/v1/auth/password", Roles: anyAccount, DuringPasswordChange: true},
	{Method: "*", Path: "/password", Roles: anyAccount, DuringPasswordChange: true},
	{Method: "*", Path: "/logout", Roles: anyAccount, DuringPasswordChange: true},
	// Gates: their gallery only (the handler checks the gate ID).
	{Method: "GET", Path: "/api/v1/gates/:/gallery", Roles: []Role{RoleGate}},
	// Teachers: read their classes and pupils, fix attendance, give
	// feedback; parents: read their own children. Handlers scope each
	// request through api.Authorize (Service.Allowed).
	{Method: "GET", Path: "/api/v1/schools", Roles: anyAccount},
	{Method: "GET", Path: "/api/v1/schools/:", Roles: anyAccount},
	{Method: "GET", Path: "/api/v1/schools/:/events", Roles: anyAccount},
	{Method: "GET", Path: "/api/v1/classes/:", Roles: staff},
	{Method: "GET", Path: "/api/v1/classes/:/attendance", Roles: staff},
	{Method: "GET", Path: "/api/v1/pupils/:", Roles: anyAccount},
	{Method: "GET", Path: "/api/v1/pupils/:/attendance/:", Roles: anyAccount},
	{Method: "POST", Path: "/api/v1/pupils/:/attendance/:/overrides", Roles: staff},
	{Method: "GET", Path: "/api/v1/pupils/:/guardians", Roles: staff},
	{Method: "POST", Path: "/api/v1/events/:/not-this-pupil", Roles: staff},
	{Method: "*", Path: "/api/v1/parent*", Roles: family},
	{Method: "*", Path: "/api/v1/push*", Roles: family},
	{Method: "*", Path: "/api/v1/notifications*", Roles: family},
	// Web pages (hub/web).
	{Method: "*", Path: "/teacher*", Roles: staff},
	{Method: "*", Path: "/class*", Roles: staff},
	{Method: "*", Path: "/board*", Roles: staff},
	{Method: "*", Path: "/live*", Roles: staff},
	{Method: "*", Path: "/parent*", Roles: family},
	{Method: "*", Path: "/me", Roles: anyAccount},
	{Method: "*", Path: "/me/*", Roles: anyAccount},
	// Calibrated recognition operating point (hub/gallerysrv): admins only.
	{Method: "GET", Path: "/api/v1/schools/:/operating-point", Roles: adminOnly},
	// Candidate restriction (hub/gallerysrv): class sessions and gate
	// classes decide whom a gate can recognise — admins only.
	{Method: "*", Path: "/api/v1/classes/:/sessions", Roles: adminOnly},
	{Method: "*", Path: "/api/v1/gates/:/classes", Roles: adminOnly},
	// Password resets (a school's admin: its accounts only, in the handler).
	{Method: "POST", Path: "/api/v1/accounts/:/reset-password", Roles: adminOnly},
	// Everything else under /api/v1 and /admin: admins only (also the default).
	{Method: "*", Path: "/admin*", Roles: adminOnly},
	{Method: "*", Path: "/api/v1/*", Roles: adminOnly},
}

// defaultRule applies to a route no rule matches.
var defaultRule = Rule{Method: "*", Path: "*", Roles: adminOnly}

// Allow adds a rule in front of the defaults (for components that add
// pages; keep it least-privilege).
func (s *Service) Allow(r Rule) {
	s.rmu.Lock()
	s.rules = append([]Rule{r}, s.rules...)
	s.rmu.Unlock()
}

// Rules returns the rules in force, first match first.
func (s *Service) Rules() []Rule {
	s.rmu.RLock()
	defer s.rmu.RUnlock()
	return append([]Rule(nil), s.rules...)
}

// MatchRule returns the rule for method and gin full path, and whether an
// explicit rule matched (false: the admin-only default).
func (s *Service) MatchRule(method, path string) (Rule, bool) {
	s.rmu.RLock()
	defer s.rmu.RUnlock()
	for _, r := range s.rules {
		if (r.Method == "*" || r.Method == method) && pathMatch(r.Path, path) {
			return r, true
		}
	}
	return defaultRule, false
}

func normalize(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if strings.HasPrefix(s, ":") {
			segs[i] = ":"
		} else if strings.HasPrefix(s, "*") {
			segs[i] = "*"
		}
	}
	return strings.Join(segs, "/")
}

func pathMatch(pattern, path string) bool {
	path = normalize(path)
	if strings.HasSuffix(pattern, "*") {
		return strings.HasPrefix(path, normalize(strings.TrimSuffix(pattern, "*")))
	}
	return normalize(pattern) == path
}
