package facereview_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/diemdanh/diemdanh/hub/broker"
	"github.com/diemdanh/diemdanh/hub/facereview"
	"github.com/diemdanh/diemdanh/hub/ingest"
	"github.com/diemdanh/diemdanh/models/wire"
)

// TestMQTTUnrecognisedStoredOnce: a gate publishes Unrecognised messages
// with QoS 1 to the real embedded broker; each is committed before its
// PUBACK (the row is there when the publish completes), a redelivery adds
// nothing, and a malformed payload is quarantined with its reason while
// the stream goes on.
func TestMQTTUnrecognisedStoredOnce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	in, err := ingest.New(f.db, ingest.Default(), nil, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	in.AddTopic(wire.TopicKindUnrecognised, f.st)
	in.Start(ctx)
	t.Cleanup(in.Close)
	bcfg := broker.Default()
	bcfg.Listen = "127.0.0.1:0"
	b, err := broker.NewEmbedded(bcfg, f.db, in, nil, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })

	g := f.gates[0]
	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + b.Addr()).SetClientID(g.Username).
		SetUsername(g.Username).SetPassword(g.Password).SetCleanSession(false).SetAutoReconnect(false).
		SetConnectTimeout(5 * time.Second))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })

	first := f.capture(t, g, time.Now().Add(-2*time.Second))
	second := f.capture(t, g, time.Now().Add(-time.Second))
	second.Kind, second.Vote = wire.KindNearMiss, &wire.Candidate{StudentID: second.Candidates[0].StudentID, Distance: 0.9, Margin: 0.15}
	bad, _ := json.Marshal(map[string]any{"schema": 1, "capture_id": "x", "face_jpeg": realCrop(t)})
	topic := wire.UnrecognisedTopic(g.School, g.ID)
	for _, step := range []struct {
		name       string
		payload    []byte
		faces      int // rows after the publish completed
		quarantine int
	}{
		{"first", mustEncode(t, first), 1, 0},
		{"redelivered", mustEncode(t, first), 1, 0},
		{"malformed", bad, 1, 1},
		{"near miss after it", mustEncode(t, second), 2, 1},
		{"near miss redelivered", mustEncode(t, second), 2, 1},
	} {
		tok := c.Publish(topic, 1, false, step.payload)
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("%s: publish: %v", step.name, tok.Error())
		}
		// The PUBACK came after the commit: no waiting here.
		if n := f.count(t, `SELECT count(*) FROM unrecognised_faces`); n != step.faces {
			t.Fatalf("%s: %d faces stored when the PUBACK arrived, want %d", step.name, n, step.faces)
		}
		if n := f.count(t, `SELECT count(*) FROM quarantine`); n != step.quarantine {
			t.Fatalf("%s: %d quarantined, want %d", step.name, n, step.quarantine)
		}
	}
	var reason string
	if err := f.db.R.QueryRow(`SELECT reason FROM quarantine`).Scan(&reason); err != nil || !strings.Contains(reason, "capture_id") {
		t.Fatalf("quarantine reason %q (%v), want one naming capture_id", reason, err)
	}
	list, err := f.st.List(ctx, g.School, []string{g.ID}, time.UnixMilli(second.CapturedAt).In(mustLoc(t)).Format("2006-01-02"))
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].CaptureID != second.CaptureID || list[0].Kind != wire.KindNearMiss || list[1].CaptureID != first.CaptureID {
		t.Fatalf("listed %+v, want the near miss then the first face", list)
	}
	if s := in.Stats(); s.Stored != 2 || s.Duplicates != 2 || s.Quarantined != 1 {
		t.Fatalf("ingest stats %+v, want 2 stored, 2 duplicates, 1 quarantined", s)
	}
	if list[0].Status != facereview.StatusOpen {
		t.Fatalf("a new face is %s", list[0].Status)
	}
	if _, err := f.st.Crop(ctx, list[0].ID); err != nil {
		t.Fatal(err)
	}
}

func mustEncode(t *testing.T, u *wire.Unrecognised) []byte {
	t.Helper()
	b, err := u.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustLoc(t *testing.T) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Asia/Ho_Chi_Minh")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}
