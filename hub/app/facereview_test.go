package app

import (
	"bytes"
	"image"
	"image/jpeg"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/crypto/bcrypt"

	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// TestUnrecognisedFaceReachesReview runs the wired hub: a gate's
// Unrecognised message published over MQTT is in the review store (crop
// readable) when its PUBACK arrives, and the purge worker runs (a face
// received longer ago than review.retention is deleted when notified).
func TestUnrecognisedFaceReachesReview(t *testing.T) {
	const gatePass = "cong-chinh-mat-khau"
	hash, err := bcrypt.GenerateFromPassword([]byte(gatePass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	a, ctx, _ := startWiredHub(t,
		`INSERT INTO classes(id, school_id, name, grade) VALUES ('c1', 's1', '1A', 1)`,
		`INSERT INTO gates(id, school_id, name, direction, username, password_hash) VALUES ('g1', 's1', 'Cổng chính', 'in', 'g1', '`+string(hash)+`')`,
		`INSERT INTO pupils(id, school_id, class_id, full_name) VALUES ('079123456789', 's1', 'c1', 'Nguyễn Văn An')`,
		`INSERT INTO pupils(id, school_id, class_id, full_name) VALUES ('079123456790', 's1', 'c1', 'Trần Thị Bình')`)
	hub, err := a.Mods.MQTT.Hub()
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + hub.Addr()).SetClientID("g1").SetUsername("g1").
		SetPassword(gatePass).SetCleanSession(false).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt connect: %v", tok.Error())
	}
	defer c.Disconnect(100)

	var jb bytes.Buffer
	if err := jpeg.Encode(&jb, image.NewGray(image.Rect(0, 0, 48, 48)), nil); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	u := wire.Unrecognised{Schema: wire.SchemaVersion, CaptureID: wire.NewEventID(), SchoolID: "s1", GateID: "g1",
		Direction: wire.DirectionIn, Kind: wire.KindUnrecognised, CapturedAt: now.UnixMilli(), FaceJPEG: jb.Bytes(),
		Quality: match.Quality{SizePx: 80, Sharpness: 90, Brightness: 110},
		Candidates: []wire.Candidate{{StudentID: "079123456789", Distance: 1.1, Margin: 0.04},
			{StudentID: "079123456790", Distance: 1.14, Margin: 0.3}},
		FramesDescribed: 3, Model: match.DefaultEmbedder, GalleryVer: 1}
	payload, err := u.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if tok := c.Publish(wire.UnrecognisedTopic("s1", "g1"), 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	day := now.In(time.FixedZone("ICT", 7*3600)).Format(time.DateOnly)
	faces, err := a.Mods.FaceReview.List(ctx, "s1", nil, day)
	if err != nil {
		t.Fatal(err)
	}
	if len(faces) != 1 || faces[0].CaptureID != u.CaptureID || len(faces[0].Candidates) != 2 {
		t.Fatalf("review store after the PUBACK: %+v", faces)
	}
	if crop, err := a.Mods.FaceReview.Crop(ctx, faces[0].ID); err != nil || !bytes.Equal(crop, u.FaceJPEG) {
		t.Fatalf("crop: %v", err)
	}

	// The purge worker: a face received eight days ago goes at the next run.
	old := now.Add(-8 * 24 * time.Hour).UnixMilli()
	if _, err := a.DB.W.Exec(`UPDATE unrecognised_faces SET received_at = ? WHERE id = ?`, old, faces[0].ID); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		a.Mods.FaceReview.Notify()
		if _, err := a.Mods.FaceReview.Get(ctx, faces[0].ID); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the hub's purge worker did not delete a face past the retention")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
