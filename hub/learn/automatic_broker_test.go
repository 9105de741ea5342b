package learn_test

import (
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/diemdanh/diemdanh/hub/broker"
	"github.com/diemdanh/diemdanh/hub/ingest/ingesttest"
	"github.com/diemdanh/diemdanh/hub/learn"
	"github.com/diemdanh/diemdanh/models/wire"
)

// TestAutomaticThroughBroker: a gate publishes (QoS 1, the real embedded
// broker on 127.0.0.1:0) an event offering a template: at PUBACK the event
// is stored, and it becomes the pupil's automatic template. The gate then
// publishes the same payload again, as after a lost PUBACK: ingest counts
// a duplicate, and the offer is not considered again (it would be refused
// as already_today). The pupil's event of the next school day is the
// barrier (offers are considered in order): it is the second offer
// considered, and added.
func TestAutomaticThroughBroker(t *testing.T) {
	f := newAutoFixture(t, learn.DefaultAutomaticConfig())
	p := f.pupils[3]
	f.grant(t, p, true, true)
	f.enrol(t, p, f.faces.enrol)
	cfg := broker.Default()
	cfg.Listen = "127.0.0.1:0"
	emb, err := broker.NewEmbedded(cfg, f.db, f.in, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := emb.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emb.Close() })
	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + emb.Addr()).SetClientID(f.gate.ID).
		SetUsername(f.gate.Username).SetPassword(f.gate.Password).SetCleanSession(false).SetAutoReconnect(false).
		SetConnectTimeout(5 * time.Second).SetProtocolVersion(4))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(50) })
	publish := func(ev wire.Event) {
		t.Helper()
		tok := c.Publish(wire.EventTopic(ev.SchoolID, ev.GateID), 1, false, ingesttest.Payload(ev))
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %s: %v", ev.EventID, tok.Error())
		}
		if n := f.count(t, `SELECT count(*) FROM events WHERE event_id = ?`, ev.EventID); n != 1 {
			t.Fatalf("event %s acknowledged with %d rows", ev.EventID, n)
		}
	}
	ev := f.event(p, f.faces.genuine)
	publish(ev)
	if c := f.waitConsidered(t, 1); c[learn.AutoAdded] != 1 {
		t.Fatalf("offer through the broker: %v", c)
	}
	if got := f.automatic(t, p); len(got) != 1 || got[0] != ev.EventID {
		t.Fatalf("automatic templates from %v, want [%s]", got, ev.EventID)
	}
	publish(ev) // the redelivery
	if st := f.in.Stats(); st.Stored != 1 || st.Duplicates != 1 {
		t.Fatalf("ingest stored %d, duplicates %d; want 1 and 1", st.Stored, st.Duplicates)
	}
	f.setClock(f.clock().Add(24 * time.Hour))
	next := f.event(p, f.faces.genuine2)
	publish(next)
	if c := f.waitConsidered(t, 2); c[learn.AutoAdded] != 2 || c[learn.AutoToday] != 0 {
		t.Fatalf("after the redelivery and the next day's event: %v", c)
	}
	if got := f.automatic(t, p); len(got) != 2 || got[0] != ev.EventID || got[1] != next.EventID {
		t.Fatalf("automatic templates from %v, want [%s %s]", got, ev.EventID, next.EventID)
	}
}
