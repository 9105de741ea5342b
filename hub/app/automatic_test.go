package app

import (
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"golang.org/x/crypto/bcrypt"

	"github.com/diemdanh/diemdanh/hub/consent"
	"github.com/diemdanh/diemdanh/hub/facetemplates"
	"github.com/diemdanh/diemdanh/hub/learn"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

// TestAutomaticTemplateOnWiredHub runs the wired hub: an event whose gate
// offers a template, published over MQTT, is stored and becomes the
// pupil's automatic gate template (consent with the gate-template scope,
// an enrolment template near the offer); /metrics counts it under
// diemdanh_automatic_templates_total{result="added"}.
func TestAutomaticTemplateOnWiredHub(t *testing.T) {
	const gatePass, pupil = "cong-chinh-mat-khau", "079123456789"
	hash, err := bcrypt.GenerateFromPassword([]byte(gatePass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	a, ctx, _ := startWiredHub(t,
		`INSERT INTO classes(id, school_id, name, grade) VALUES ('c1', 's1', '1A', 1)`,
		`INSERT INTO gates(id, school_id, name, direction, username, password_hash) VALUES ('g1', 's1', 'Cổng chính', 'in', 'g1', '`+string(hash)+`')`,
		`INSERT INTO pupils(id, school_id, class_id, full_name) VALUES ('`+pupil+`', 's1', 'c1', 'Nguyễn Văn An')`)
	on := true
	if _, err := a.Mods.Consent.Record(ctx, "admin:root", consent.Grant{PupilID: pupil, GuardianName: "Nguyễn Thị Mai", PupilConsented: true,
		ScopeFace: true, ScopePhotos: true, ScopeGateTemplates: &on, DocumentRef: "DK-1"}); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	enrol, offer := make(match.Descriptor, match.DescriptorLen), make(match.Descriptor, match.DescriptorLen)
	for i := range enrol {
		enrol[i] = float32(r.NormFloat64() / 11.3)
		offer[i] = enrol[i] + float32(r.NormFloat64()/60)
	}
	model := a.Mods.Templates.Model()
	if _, err := a.Mods.Templates.Add(ctx, pupil, enrol, model, match.Quality{SizePx: 200}, nil); err != nil {
		t.Fatal(err)
	}
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
	ev := wire.Event{Schema: wire.SchemaVersion, EventID: wire.NewEventID(), SchoolID: "s1", GateID: "g1", Direction: wire.DirectionIn,
		StudentID: pupil, CapturedAt: time.Now().UnixMilli(), Distance: 0.6, Margin: 0.3, FramesUsed: 3,
		Quality: match.Quality{SizePx: 110, Sharpness: 70, Brightness: 120}, Model: model, GalleryVer: 1,
		Template: &wire.EventTemplate{Descriptor: offer.Bytes(), DistanceMargin: 0.3, SecondMargin: 0.3, Agreeing: 3, Votes: 3}}
	payload, err := ev.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if tok := c.Publish(wire.EventTopic("s1", "g1"), 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	deadline := time.Now().Add(10 * time.Second)
	for a.Mods.Automatic.Counts()[learn.AutoAdded] != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("no automatic template: %v", a.Mods.Automatic.Counts())
		}
		time.Sleep(10 * time.Millisecond)
	}
	list, err := a.Mods.Templates.List(ctx, pupil)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[1].Source != facetemplates.SourceAutomatic || list[1].EventID != ev.EventID {
		t.Fatalf("templates %+v: want the enrolment one and an automatic one from the event", list)
	}
	resp, err := http.Get(a.BaseURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `diemdanh_automatic_templates_total{result="added"} 1`) {
		t.Fatal("/metrics does not count the automatic template")
	}
}
