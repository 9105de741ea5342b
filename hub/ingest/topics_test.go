package ingest_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/facereview"
	"github.com/diemdanh/diemdanh/hub/ingest"
	"github.com/diemdanh/diemdanh/hub/ingest/ingesttest"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// unrecognised is a valid wire.Unrecognised from gate g at time at.
func unrecognised(t *testing.T, g ingesttest.Gate, pupils []string, at time.Time) wire.Unrecognised {
	t.Helper()
	return wire.Unrecognised{
		Schema: wire.SchemaVersion, CaptureID: wire.NewEventID(), SchoolID: g.School, GateID: g.ID,
		Direction: wire.DirectionIn, Kind: wire.KindUnrecognised, CapturedAt: at.UnixMilli(), FaceJPEG: realCrop(t),
		Quality:         match.Quality{SizePx: 90, Sharpness: 100, Brightness: 120},
		Candidates:      []wire.Candidate{{StudentID: pupils[0], Distance: 1.1, Margin: 0.2}},
		FramesDescribed: 3, Model: match.DefaultEmbedder, GalleryVer: 1,
	}
}

func encodeU(t *testing.T, u wire.Unrecognised) []byte {
	t.Helper()
	b, err := u.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestTopicHandlerGetsGateChecksAndQuarantine: a registered topic kind
// (unrecognised faces, stored by hub/facereview) goes through the gate
// checks of events, its refusals are quarantined with the reason and
// without the face crop, a redelivery is a duplicate, and a good message
// after each refusal is stored.
func TestTopicHandlerGetsGateChecksAndQuarantine(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	key := make([]byte, facereview.KeySize)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	rs, err := facereview.New(f.db, key, audit.New(f.db, nil, nil), facereview.Default(), nil, func() time.Time { return f.now })
	if err != nil {
		t.Fatal(err)
	}
	f.in.AddTopic(wire.TopicKindUnrecognised, rs)
	g, other := f.gates[0], f.gates[2] // thcs-a, thcs-b
	good := func() wire.Unrecognised { return unrecognised(t, g, f.pupils[g.School], f.now.Add(-time.Minute)) }
	topic := wire.UnrecognisedTopic(g.School, g.ID)
	enc := func(mut func(*wire.Unrecognised)) []byte { u := good(); mut(&u); return encodeU(t, u) }
	raw := func(mut func(*wire.Unrecognised)) []byte { // bypasses Encode's validation
		u := good()
		mut(&u)
		b, err := json.Marshal(u)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cases := []struct {
		name, topic string
		payload     []byte
		reason      string
	}{
		{"malformed json", topic, []byte(`{"schema":1,"capture_id":`), "malformed JSON"},
		{"breaks the contract", topic, raw(func(u *wire.Unrecognised) { u.Candidates = nil }), "candidates"},
		{"unknown gate", wire.UnrecognisedTopic(g.School, "gate9"), enc(func(u *wire.Unrecognised) { u.GateID = "gate9" }), "unknown gate"},
		{"gate of another school", wire.UnrecognisedTopic(g.School, other.ID), enc(func(u *wire.Unrecognised) { u.GateID = other.ID }), "does not belong"},
		{"topic/payload gate mismatch", topic, enc(func(u *wire.Unrecognised) { u.GateID = f.gates[1].ID }), "does not match topic gate"},
		{"topic/payload school mismatch", topic, enc(func(u *wire.Unrecognised) { u.SchoolID = "thcs-b" }), "does not match topic school"},
		{"future", topic, enc(func(u *wire.Unrecognised) { u.CapturedAt = f.now.Add(10 * time.Minute).UnixMilli() }), "in the future"},
		{"ancient", topic, enc(func(u *wire.Unrecognised) { u.CapturedAt = f.now.Add(-31 * 24 * time.Hour).UnixMilli() }), "older than"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := f.in.Handle(ctx, ingest.Message{Topic: c.topic, Payload: c.payload, ClientID: "c1"})
			if err != nil || res != ingest.Quarantined {
				t.Fatalf("got %v, %v; want quarantined", res, err)
			}
			var reason string
			var payload []byte
			if err := f.db.R.QueryRow(`SELECT reason, payload FROM quarantine ORDER BY id DESC LIMIT 1`).Scan(&reason, &payload); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(reason, c.reason) {
				t.Fatalf("reason %q does not mention %q", reason, c.reason)
			}
			crop := base64.StdEncoding.EncodeToString(realCrop(t))
			if bytes.Contains(payload, []byte(crop[len(crop)/2:][:64])) {
				t.Fatal("the quarantined payload keeps the face crop")
			}
			u := good()
			for i, want := range []ingest.Result{ingest.Stored, ingest.Duplicate} {
				res, err := f.in.Handle(ctx, ingest.Message{Topic: topic, Payload: encodeU(t, u)})
				if err != nil || res != want {
					t.Fatalf("good message after a bad one, delivery %d: %v, %v; want %v", i+1, res, err, want)
				}
			}
		})
	}
	if n := f.count(t, `SELECT count(*) FROM unrecognised_faces`); n != len(cases) {
		t.Fatalf("%d faces stored, want %d", n, len(cases))
	}
	// Without a handler the kind is refused, not lost.
	f2 := newFixture(t)
	res, err := f2.in.Handle(ctx, ingest.Message{Topic: wire.UnrecognisedTopic(f2.gates[0].School, f2.gates[0].ID),
		Payload: encodeU(t, unrecognised(t, f2.gates[0], f2.pupils["thcs-a"], f2.now.Add(-time.Minute)))})
	if err != nil || res != ingest.Quarantined {
		t.Fatalf("no handler: %v, %v; want quarantined", res, err)
	}
}
