package broker_test

import (
	"bytes"
	"errors"
	"image"
	"image/jpeg"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/diemdanh/diemdanh/hub/broker"
	"github.com/diemdanh/diemdanh/hub/ingest/ingesttest"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// TestGateMayPublishUnrecognised: a gate may publish to its own
// unrecognised topic, not retained, and to nobody else's.
func TestGateMayPublishUnrecognised(t *testing.T) {
	g := broker.Gate{School: "thcs-a", ID: "gate1", Username: "thcs-a.gate1"}
	cases := []struct {
		name   string
		topic  string
		retain bool
		ok     bool
	}{
		{"own", wire.UnrecognisedTopic("thcs-a", "gate1"), false, true},
		{"own events still", wire.EventTopic("thcs-a", "gate1"), false, true},
		{"own, retained", wire.UnrecognisedTopic("thcs-a", "gate1"), true, false},
		{"another gate of the school", wire.UnrecognisedTopic("thcs-a", "gate2"), false, false},
		{"same gate ID in another school", wire.UnrecognisedTopic("thcs-b", "gate1"), false, false},
		{"wildcard gate", wire.UnrecognisedTopic("thcs-a", "+"), false, false},
		{"a level below", wire.UnrecognisedTopic("thcs-a", "gate1") + "/x", false, false},
	}
	for _, tc := range cases {
		err := g.MayPublish(tc.topic, tc.retain)
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, broker.ErrNotAllowed)) {
			t.Errorf("%s: MayPublish(%s, retain %v) = %v, want allowed %v", tc.name, tc.topic, tc.retain, err, tc.ok)
		}
	}
}

// TestEmbeddedUnrecognisedACL: on the real embedded broker, gate A's
// unrecognised face is acknowledged on its own topic, and A is
// disconnected when it publishes one to gate B's topic (same school or
// another) or retains one.
func TestEmbeddedUnrecognisedACL(t *testing.T) {
	f := startHub(t, nil, nil)
	url := "tcp://" + f.emb.Addr()
	a, a2, b := f.gates[0], f.gates[1], f.gates[2] // a, a2: school thcs-a; b: thcs-b
	payload := unrecognisedPayload(t, a, f.pupils["thcs-a"][0])

	t.Run("own topic acknowledged", func(t *testing.T) {
		lost := make(chan error, 1)
		o := clientOpts(url, "un-own-"+a.ID, a.Username, a.Password).
			SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err })
		c, err := connect(t, o)
		if err != nil {
			t.Fatal(err)
		}
		tok := c.Publish(wire.UnrecognisedTopic(a.School, a.ID), 1, false, payload)
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("no PUBACK on the gate's own unrecognised topic: %v", tok.Error())
		}
		select {
		case err := <-lost:
			t.Fatalf("gate disconnected after publishing to its own unrecognised topic: %v", err)
		case <-time.After(500 * time.Millisecond):
		}
	})
	for _, tc := range []struct {
		name   string
		topic  string
		retain bool
	}{
		{"to another gate of the same school", wire.UnrecognisedTopic(a2.School, a2.ID), false},
		{"to another school's gate", wire.UnrecognisedTopic(b.School, b.ID), false},
		{"retained on its own topic", wire.UnrecognisedTopic(a.School, a.ID), true},
	} {
		t.Run("cannot publish "+tc.name, func(t *testing.T) {
			lost := make(chan error, 1)
			o := clientOpts(url, "un-pub-"+a.ID, a.Username, a.Password).
				SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err })
			c, err := connect(t, o)
			if err != nil {
				t.Fatal(err)
			}
			c.Publish(tc.topic, 1, tc.retain, payload)
			select {
			case <-lost: // MQTT 3.1.1: the broker drops a client that publishes where it may not
			case <-time.After(5 * time.Second):
				t.Fatal("broker did not disconnect the offending gate")
			}
		})
	}
}

// unrecognisedPayload is a valid Unrecognised message of gate g naming
// pupil as the nearest candidate.
func unrecognisedPayload(t *testing.T, g ingesttest.Gate, pupil string) []byte {
	t.Helper()
	var jb bytes.Buffer
	if err := jpeg.Encode(&jb, image.NewGray(image.Rect(0, 0, 16, 16)), nil); err != nil {
		t.Fatal(err)
	}
	u := wire.Unrecognised{Schema: wire.SchemaVersion, CaptureID: wire.NewEventID(), SchoolID: g.School, GateID: g.ID,
		Direction: wire.DirectionIn, Kind: wire.KindUnrecognised, CapturedAt: time.Now().UnixMilli(), FaceJPEG: jb.Bytes(),
		Quality:         match.Quality{SizePx: 100, Sharpness: 100, Brightness: 120},
		Candidates:      []wire.Candidate{{StudentID: pupil, Distance: 0.9, Margin: 0.1}},
		FramesDescribed: 2, Model: match.DefaultEmbedder, GalleryVer: 1}
	b, err := u.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
