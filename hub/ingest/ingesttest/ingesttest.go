// Package ingesttest seeds a hub database with schools, gates and pupils
// and builds valid events, for the ingest and broker tests and the
// bench-ingest command.
package ingesttest

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// Gate is a seeded gate with its clear-text MQTT password.
type Gate struct {
	School, ID, Username, Password string
}

// Seed creates schools with nGates gates and nPupils pupils each (pupil
// IDs are 12 digits: school index, then a counter). Passwords are hashed
// with bcrypt.MinCost to keep tests fast. It returns the gates and the
// pupil IDs per school.
func Seed(ctx context.Context, db *store.DB, schools []string, nGates, nPupils int) ([]Gate, map[string][]string, error) {
	var gates []Gate
	pupils := map[string][]string{}
	err := db.Tx(ctx, func(tx *sql.Tx) error {
		for si, s := range schools {
			if _, err := tx.Exec(`INSERT INTO schools(id, name) VALUES (?, ?)`, s, "Trường "+s); err != nil {
				return err
			}
			cls := s + "-1a"
			if _, err := tx.Exec(`INSERT INTO classes(id, school_id, name, grade) VALUES (?, ?, '1A', 1)`, cls, s); err != nil {
				return err
			}
			for g := 0; g < nGates; g++ {
				gt := Gate{School: s, ID: fmt.Sprintf("gate%d", g+1), Username: fmt.Sprintf("%s.gate%d", s, g+1),
					Password: fmt.Sprintf("pw-%s-%d-secret", s, g+1)}
				// Gate IDs are unique hub-wide: prefix with the school when there are several.
				if len(schools) > 1 {
					gt.ID = fmt.Sprintf("%s-gate%d", s, g+1)
				}
				h, err := bcrypt.GenerateFromPassword([]byte(gt.Password), bcrypt.MinCost)
				if err != nil {
					return err
				}
				if _, err := tx.Exec(`INSERT INTO gates(id, school_id, name, username, password_hash) VALUES (?,?,?,?,?)`,
					gt.ID, s, "Cổng "+gt.ID, gt.Username, string(h)); err != nil {
					return err
				}
				gates = append(gates, gt)
			}
			for p := 0; p < nPupils; p++ {
				id := fmt.Sprintf("%03d%09d", si+1, p+1)
				if _, err := tx.Exec(`INSERT INTO pupils(id, school_id, class_id, full_name) VALUES (?,?,?,?)`,
					id, s, cls, fmt.Sprintf("Học sinh %d", p+1)); err != nil {
					return err
				}
				pupils[s] = append(pupils[s], id)
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("ingesttest: seed: %w", err)
	}
	return gates, pupils, nil
}

// Event returns a valid event from gate g for student at time at.
func Event(g Gate, student string, at time.Time) wire.Event {
	return wire.Event{
		Schema: wire.SchemaVersion, EventID: wire.NewEventID(), SchoolID: g.School, GateID: g.ID,
		Direction: wire.DirectionIn, StudentID: student, CapturedAt: at.UnixMilli(),
		Distance: 0.31, Margin: 0.12, FramesUsed: 5,
		Quality:    match.Quality{Sharpness: 120, YawDeg: 3, RollDeg: 1, Brightness: 130},
		Model:      match.DefaultEmbedder,
		GalleryVer: 1,
	}
}

// Payload encodes ev (which must be valid).
func Payload(ev wire.Event) []byte {
	b, err := ev.Encode()
	if err != nil {
		panic(err)
	}
	return b
}
