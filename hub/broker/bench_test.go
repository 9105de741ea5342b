package broker_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/broker"
	"github.com/diemdanh/diemdanh/hub/ingest/ingesttest"
	"github.com/diemdanh/diemdanh/models/wire"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		field string
		mut   func(*broker.Config)
	}{
		{"broker.mode", func(c *broker.Config) { c.Mode = "cloud" }},
		{"broker.listen", func(c *broker.Config) { c.Listen = "" }},
		{"broker.tls_cert", func(c *broker.Config) { c.TLSCert = "x.pem" }},
		{"broker.max_packet_bytes", func(c *broker.Config) { c.MaxPacketBytes = 1000 }},
		{"broker.lockout.base", func(c *broker.Config) { c.Lockout.Base = 0 }},
		{"broker.external.url", func(c *broker.Config) { c.Mode = broker.ModeExternal }},
	} {
		c := broker.Default()
		tc.mut(&c)
		err := c.Validate("broker")
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("want error naming %s, got %v", tc.field, err)
		}
	}
	if err := broker.Default().Validate("broker"); err != nil {
		t.Fatal(err)
	}
}

// A QoS 2 event is committed before mochi's PUBREC; a huge payload over
// the embedded broker is quarantined and the stream continues.
func TestEmbeddedQoS2AndHugePayload(t *testing.T) {
	f := startHub(t, nil, nil)
	g := f.gates[0]
	c, err := connect(t, clientOpts("tcp://"+f.emb.Addr(), "q2", g.Username, g.Password))
	if err != nil {
		t.Fatal(err)
	}
	ev := ingesttest.Event(g, f.pupils[g.School][0], time.Now())
	if tok := c.Publish(wire.EventTopic(g.School, g.ID), 2, false, ingesttest.Payload(ev)); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	if f.count(t, `SELECT count(*) FROM events WHERE event_id=?`, ev.EventID) != 1 {
		t.Fatal("QoS 2 event not committed at PUBCOMP")
	}
	huge := append([]byte(`{"schema":1,"pad":"`), bytes.Repeat([]byte("x"), 300<<10)...)
	huge = append(huge, '"', '}')
	if tok := c.Publish(wire.EventTopic(g.School, g.ID), 1, false, huge); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	if f.count(t, `SELECT count(*) FROM quarantine WHERE reason LIKE '%exceeds%'`) != 1 {
		t.Fatal("huge payload not quarantined")
	}
	next := ingesttest.Event(g, f.pupils[g.School][1], time.Now())
	if tok := c.Publish(wire.EventTopic(g.School, g.ID), 1, false, ingesttest.Payload(next)); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	if f.count(t, `SELECT count(*) FROM events WHERE event_id=?`, next.EventID) != 1 {
		t.Fatal("event after a huge payload not stored")
	}
}
