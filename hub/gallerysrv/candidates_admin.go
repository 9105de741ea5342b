package gallerysrv

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/roster"
	"github.com/diemdanh/diemdanh/models/match"
)

// Candidate restriction for a whole school at once (hub/web's
// /admin/candidates page). The writes are the ones the JSON API makes
// (writeClassSessions, writeGateClasses): same columns, same audit
// actions, and Changed bumps the gallery version.

// CandidateClass is one class and its sessions (all of match.Sessions
// when it attends every session).
type CandidateClass struct {
	ID, Name string
	Sessions []string
}

// CandidateGate is one gate and its assigned classes (empty: every class).
type CandidateGate struct {
	ID, Name string
	ClassIDs []string
}

// CandidateSettings is a school's candidate restriction.
type CandidateSettings struct {
	Classes []CandidateClass
	Gates   []CandidateGate
}

// canonicalSessions validates in and returns it in canonical order with
// the stored form (” = every session). An empty list means every session.
func canonicalSessions(in []string) (keep []string, stored string, err error) {
	if err := match.ValidSessions(in); err != nil {
		return nil, "", err
	}
	for _, name := range match.Sessions {
		if len(in) == 0 || slices.Contains(in, name) {
			keep = append(keep, name)
		}
	}
	stored = strings.Join(keep, ",")
	if len(keep) == len(match.Sessions) {
		stored = ""
	}
	return keep, stored, nil
}

// writeClassSessions stores class id's sessions and audits the change in
// tx (hub/roster's SetClassSessionsTx; the caller tells Changed after the
// commit).
func (s *Server) writeClassSessions(ctx context.Context, tx *sql.Tx, actor, ip, id, old string, keep []string, stored string) error {
	entry := roster.Entry{Action: ActionClassSessions, Detail: map[string]any{"from": splitSessions(old), "to": keep}}
	if _, err := roster.SetClassSessionsTx(roster.WithActor(ctx, actor, ip), tx, id, stored, s.now(), entry); err != nil {
		return fmt.Errorf("gallery: class sessions: %w", err)
	}
	return nil
}

// writeGateClasses replaces gate's classes by ids (sorted) and audits it in tx.
func (s *Server) writeGateClasses(ctx context.Context, tx *sql.Tx, aud *audit.Log, actor, ip, gate string, before, ids []string) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM gate_classes WHERE gate_id = ?`, gate); err != nil {
		return fmt.Errorf("gallery: gate classes: %w", err)
	}
	for _, id := range ids {
		if _, err := tx.ExecContext(ctx, `INSERT INTO gate_classes(gate_id, class_id) VALUES (?, ?)`, gate, id); err != nil {
			return fmt.Errorf("gallery: gate classes: %w", err)
		}
	}
	return aud.RecordTx(ctx, tx, actor, ActionGateClasses, "gate:"+gate,
		map[string]any{"from": before, "to": ids}, ip)
}

// CandidateSettings reads school's classes (with sessions) and active
// gates (with assigned classes), ordered for display.
func (s *Server) CandidateSettings(ctx context.Context, school string) (*CandidateSettings, error) {
	out := &CandidateSettings{}
	rows, err := s.db.R.QueryContext(ctx, `SELECT id, name, sessions FROM classes WHERE school_id = ? ORDER BY grade, name, id`, school)
	if err != nil {
		return nil, fmt.Errorf("gallery: candidates %s: %w", school, err)
	}
	for rows.Next() {
		var c CandidateClass
		var ss string
		if err := rows.Scan(&c.ID, &c.Name, &ss); err != nil {
			rows.Close()
			return nil, fmt.Errorf("gallery: candidates %s: %w", school, err)
		}
		if c.Sessions = splitSessions(ss); c.Sessions == nil {
			c.Sessions = append([]string(nil), match.Sessions...)
		}
		out.Classes = append(out.Classes, c)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("gallery: candidates %s: %w", school, err)
	}
	rows, err = s.db.R.QueryContext(ctx, `SELECT g.id, g.name, COALESCE(group_concat(gc.class_id), '') FROM gates g
		LEFT JOIN gate_classes gc ON gc.gate_id = g.id WHERE g.school_id = ? AND g.active = 1 GROUP BY g.id ORDER BY g.id`, school)
	if err != nil {
		return nil, fmt.Errorf("gallery: candidates %s: %w", school, err)
	}
	defer rows.Close()
	for rows.Next() {
		var g CandidateGate
		var ids string
		if err := rows.Scan(&g.ID, &g.Name, &ids); err != nil {
			return nil, fmt.Errorf("gallery: candidates %s: %w", school, err)
		}
		g.ClassIDs = []string{}
		if ids != "" {
			g.ClassIDs = strings.Split(ids, ",")
			sort.Strings(g.ClassIDs)
		}
		out.Gates = append(out.Gates, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("gallery: candidates %s: %w", school, err)
	}
	return out, nil
}

// SaveCandidates sets the sessions of the classes and the classes of the
// gates listed in in (others are left alone) for school, in one
// transaction: every input is checked first, so a bad one (a class or
// gate of another school or unknown — api.Error field "class:ID",
// "gate:ID" or "session:NAME") changes nothing. Only real changes are
// written and audited (as the JSON API does); it returns how many, and
// bumps the gallery version when there was any.
func (s *Server) SaveCandidates(ctx context.Context, actor, ip, school string, in CandidateSettings) (int, error) {
	cur, err := s.CandidateSettings(ctx, school)
	if err != nil {
		return 0, err
	}
	classes := map[string]CandidateClass{}
	for _, c := range cur.Classes {
		classes[c.ID] = c
	}
	gates := map[string]CandidateGate{}
	for _, g := range cur.Gates {
		gates[g.ID] = g
	}
	type sessChange struct {
		id, old, stored string
		keep            []string
	}
	type gateChange struct {
		id          string
		before, ids []string
	}
	var sc []sessChange
	var gcs []gateChange
	for _, c := range in.Classes {
		old, ok := classes[c.ID]
		if !ok {
			return 0, api.Invalid("class:"+c.ID, "no class %q in school %s / không có lớp này trong trường", c.ID, school)
		}
		for _, name := range c.Sessions {
			if !slices.Contains(match.Sessions, name) {
				return 0, api.Invalid("session:"+name, "unknown session %q (want %v) / ca học không hợp lệ", name, match.Sessions)
			}
		}
		keep, stored, err := canonicalSessions(c.Sessions)
		if err != nil {
			return 0, api.Invalid("session:"+strings.Join(c.Sessions, ","), "%v", err)
		}
		if !slices.Equal(keep, old.Sessions) {
			oldStored := strings.Join(old.Sessions, ",")
			if len(old.Sessions) == len(match.Sessions) {
				oldStored = ""
			}
			sc = append(sc, sessChange{id: c.ID, old: oldStored, stored: stored, keep: keep})
		}
	}
	for _, g := range in.Gates {
		old, ok := gates[g.ID]
		if !ok {
			return 0, api.Invalid("gate:"+g.ID, "no active gate %q in school %s / không có cổng này trong trường", g.ID, school)
		}
		seen := map[string]bool{}
		ids := []string{}
		for _, id := range g.ClassIDs {
			if _, ok := classes[id]; !ok {
				return 0, api.Invalid("class:"+id, "no class %q in school %s / không có lớp này trong trường", id, school)
			}
			if !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
		sort.Strings(ids)
		if !slices.Equal(ids, old.ClassIDs) {
			gcs = append(gcs, gateChange{id: g.ID, before: old.ClassIDs, ids: ids})
		}
	}
	n := len(sc) + len(gcs)
	if n == 0 {
		return 0, nil
	}
	aud := audit.New(s.db, s.log, s.now)
	err = s.db.Tx(ctx, func(tx *sql.Tx) error {
		for _, c := range sc {
			if err := s.writeClassSessions(ctx, tx, actor, ip, c.id, c.old, c.keep, c.stored); err != nil {
				return err
			}
		}
		for _, g := range gcs {
			if err := s.writeGateClasses(ctx, tx, aud, actor, ip, g.id, g.before, g.ids); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	s.Changed(ctx, school)
	return n, nil
}
