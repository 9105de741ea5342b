package ingest_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/ingest"
	"github.com/diemdanh/diemdanh/hub/ingest/ingesttest"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// templateDescriptor is a 128-value descriptor whose encoding is easy to
// find in a payload.
func templateDescriptor() match.Descriptor {
	d := make(match.Descriptor, match.DescriptorLen)
	for i := range d {
		d[i] = float32(math.Sin(float64(i))) / 8
	}
	return d
}

// TestTemplateEventStoredAndToldOnce: an event offering a template is
// stored like any event, and its listeners get the template with it,
// once; the redelivery is a duplicate that no listener hears of.
func TestTemplateEventStoredAndToldOnce(t *testing.T) {
	f := newFixture(t)
	g := f.gates[0]
	ev := ingesttest.Event(g, f.pupils["thcs-a"][1], f.now.Add(-time.Minute))
	ev.Template = &wire.EventTemplate{Descriptor: templateDescriptor().Bytes(), DistanceMargin: 0.2, SecondMargin: 0.3, Agreeing: 3, Votes: 3}
	msg := ingest.Message{Topic: wire.EventTopic(g.School, g.ID), Payload: ingesttest.Payload(ev), ClientID: g.Username}
	for i, want := range []ingest.Result{ingest.Stored, ingest.Duplicate} {
		if res, err := f.in.Handle(context.Background(), msg); err != nil || res != want {
			t.Fatalf("delivery %d: %v, %v; want %v", i+1, res, err, want)
		}
	}
	f.in.Close() // every listener has been told
	if len(f.seen) != 1 || f.seen[0].EventID != ev.EventID || f.seen[0].Template == nil ||
		!slices.Equal(f.seen[0].Template.Descriptor, ev.Template.Descriptor) {
		t.Fatalf("listeners were told %d events, want this one once with its template", len(f.seen))
	}
}

// TestQuarantineKeepsNoDescriptor: a refused event that offered a
// template (a bad field in it, an unknown pupil, a malformed descriptor)
// goes to quarantine without the descriptor, as without the face crop.
func TestQuarantineKeepsNoDescriptor(t *testing.T) {
	f := newFixture(t)
	g := f.gates[0]
	desc := templateDescriptor()
	b64 := base64.StdEncoding.EncodeToString(desc.Bytes())
	enc := func(mut func(*wire.Event)) []byte {
		ev := ingesttest.Event(g, f.pupils["thcs-a"][0], f.now.Add(-time.Minute))
		ev.Template = &wire.EventTemplate{Descriptor: desc.Bytes(), DistanceMargin: 0.2, SecondMargin: 0.3, Agreeing: 3, Votes: 3}
		mut(&ev)
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	asArray := bytes.Replace(enc(func(*wire.Event) {}), []byte(`"`+b64+`"`), []byte(`[0.5,0.25,0.125]`), 1)
	cases := []struct {
		name, reason string
		payload      []byte
		gone         string // what must not be kept
	}{
		{"unknown pupil", "unknown pupil", enc(func(e *wire.Event) { e.StudentID = "999999999999" }), b64[:64]},
		{"agreeing over votes", "template.agreeing", enc(func(e *wire.Event) { e.Template.Agreeing = 9 }), b64[:64]},
		{"descriptor as an array", "malformed JSON", asArray, "0.5,0.25"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !bytes.Contains(c.payload, []byte(c.gone)) {
				t.Fatal("the payload does not carry the descriptor")
			}
			res, err := f.in.Handle(context.Background(), ingest.Message{Topic: wire.EventTopic(g.School, g.ID), Payload: c.payload, ClientID: g.Username})
			if err != nil || res != ingest.Quarantined {
				t.Fatalf("%v %v; want quarantined", res, err)
			}
			var reason string
			var kept []byte
			if err := f.db.R.QueryRow(`SELECT reason, payload FROM quarantine ORDER BY id DESC LIMIT 1`).Scan(&reason, &kept); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(reason, c.reason) {
				t.Fatalf("reason %q, want %q", reason, c.reason)
			}
			if bytes.Contains(kept, []byte(c.gone)) || !bytes.Contains(kept, []byte(`"descriptor":"(removed)"`)) {
				t.Fatalf("quarantine kept the descriptor: %.400s", kept)
			}
		})
	}
}
