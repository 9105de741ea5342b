package match

import (
	"errors"
	"fmt"
	"slices"
)

// School sessions (ca học). Many Vietnamese schools teach two shifts: a
// class attends the morning one (ca sáng), the afternoon one (ca chiều), or
// both. Candidate restriction uses them: during the morning window a gate
// compares a probe only with the pupils expected in the morning.
const (
	SessionMorning   = "morning"
	SessionAfternoon = "afternoon"
)

// Sessions lists the known session names in order.
var Sessions = []string{SessionMorning, SessionAfternoon}

// ValidSession reports whether s is a known session name.
func ValidSession(s string) bool { return slices.Contains(Sessions, s) }

// ValidSessions checks a person's or class's session list: known names
// only, no repeats. An empty list is valid and means every session.
func ValidSessions(ss []string) error {
	if len(ss) > len(Sessions) {
		return fmt.Errorf("at most %d sessions, got %d", len(Sessions), len(ss))
	}
	for i, s := range ss {
		if !ValidSession(s) {
			return fmt.Errorf("unknown session %q (want one of %v)", trunc(s), Sessions)
		}
		if slices.Contains(ss[:i], s) {
			return errors.New("duplicate session " + s)
		}
	}
	return nil
}

// SetSessions records the sessions person attends (nil or empty: every
// session). Call it only while building, after the person's first Add;
// an unknown person is ignored.
func (g *Gallery) SetSessions(person string, sessions []string) {
	i, ok := g.index[person]
	if !ok {
		return
	}
	if len(sessions) == 0 {
		delete(g.sessions, i)
		return
	}
	if g.sessions == nil {
		g.sessions = map[int32][]string{}
	}
	g.sessions[i] = append([]string(nil), sessions...)
}

// Sessions returns the sessions person attends; nil means every session.
func (g *Gallery) Sessions(person string) []string {
	i, ok := g.index[person]
	if !ok || g.sessions[i] == nil {
		return nil
	}
	return append([]string(nil), g.sessions[i]...)
}

// InSession reports whether person is expected in session (always true for
// a person without a session list, and for session "" meaning "no
// restriction").
func (g *Gallery) InSession(person, session string) bool {
	if session == "" {
		return true
	}
	i, ok := g.index[person]
	if !ok {
		return false
	}
	ss, has := g.sessions[i]
	return !has || slices.Contains(ss, session)
}

// SessionFilter is the Filter for MatchFiltered that admits only the
// persons expected in Session. The zero Session admits everybody.
type SessionFilter struct {
	G       *Gallery
	Session string
}

// Allow implements Filter.
func (f SessionFilter) Allow(person string) bool { return f.G.InSession(person, f.Session) }

// SessionCandidates counts the identities expected in session (all of them
// for session "").
func (g *Gallery) SessionCandidates(session string) int {
	if session == "" || len(g.sessions) == 0 {
		return len(g.ids)
	}
	n := 0
	for i := range g.ids {
		ss, has := g.sessions[int32(i)]
		if !has || slices.Contains(ss, session) {
			n++
		}
	}
	return n
}
