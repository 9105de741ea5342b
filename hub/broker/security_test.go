package broker_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/diemdanh/diemdanh/hub/broker"
	"github.com/diemdanh/diemdanh/hub/ingest/ingesttest"
	"github.com/diemdanh/diemdanh/hub/roster"
	"github.com/diemdanh/diemdanh/models/wire"
)

// secHub is a hub on one of the two brokers, with the operations the
// security tests need done the way an operator does them on that broker.
type secHub struct {
	*hubFixture
	kind string
	url  string
	// announce publishes the hub's retained gallery announcement.
	announce func(school string, version int) error
	// rotate gives gate g a new password and returns it; deactivate takes
	// the gate off the broker (embedded: the admin's roster call; mosquitto:
	// the operator's mosquitto_passwd on the plugin's password file).
	rotate     func(t *testing.T, g ingesttest.Gate) string
	deactivate func(t *testing.T, g ingesttest.Gate)
}

var secBrokers = []string{"embedded", "mosquitto"}

func startSecHub(t *testing.T, kind string) *secHub {
	t.Helper()
	if kind == "embedded" {
		f := startHub(t, nil, nil)
		rs := roster.New(f.db, testLog, nil)
		rs.BcryptCost = 4
		h := &secHub{hubFixture: f, kind: kind, url: "tcp://" + f.emb.Addr()}
		h.announce = func(school string, v int) error {
			return f.emb.Announce(context.Background(), school, wire.GalleryAnnounce{Schema: 1, Version: int64(v)})
		}
		h.rotate = func(t *testing.T, g ingesttest.Gate) string {
			c, err := rs.RotateGatePassword(context.Background(), g.ID)
			if err != nil {
				t.Fatal(err)
			}
			return c.Password
		}
		h.deactivate = func(t *testing.T, g ingesttest.Gate) {
			x, err := rs.Gate(context.Background(), g.ID)
			if err != nil {
				t.Fatal(err)
			}
			x.Active = false
			if _, err := rs.UpdateGate(context.Background(), x); err != nil {
				t.Fatal(err)
			}
		}
		return h
	}
	return startSecMosquitto(t)
}

func startSecMosquitto(t *testing.T) *secHub {
	t.Helper()
	ctx := context.Background()
	f := &hubFixture{db: openDB(t)}
	var err error
	if f.gates, f.pupils, err = ingesttest.Seed(ctx, f.db, []string{"thcs-a", "thcs-b"}, 2, 10); err != nil {
		t.Fatal(err)
	}
	acl, err := broker.MosquittoACL(ctx, f.db, hubUser)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	aclPath, pw := filepath.Join(dir, "acl"), filepath.Join(dir, "passwd")
	os.WriteFile(aclPath, []byte(acl), 0o600)
	passwd := func(t *testing.T, args ...string) {
		if out, err := exec.Command("/usr/bin/mosquitto_passwd", args...).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_passwd: %v: %s", err, out)
		}
	}
	passwd(t, "-b", "-c", pw, hubUser, hubPass)
	for _, g := range f.gates {
		passwd(t, "-b", pw, g.Username, g.Password)
	}
	x := &extFixture{hubFixture: f, url: runMosquittoFiles(t, dir, aclPath, pw)}
	ing, ext := x.startHub(t)
	t.Cleanup(func() { ext.Close(); ing.Close() })
	h := &secHub{hubFixture: f, kind: "mosquitto", url: x.url}
	h.announce = func(school string, v int) error {
		return ext.Announce(context.Background(), school, wire.GalleryAnnounce{Schema: 1, Version: int64(v)})
	}
	n := 0
	h.rotate = func(t *testing.T, g ingesttest.Gate) string {
		n++
		np := g.Password + "-rotated-" + string(rune('a'+n))
		passwd(t, "-b", pw, g.Username, np)
		return np
	}
	h.deactivate = func(t *testing.T, g ingesttest.Gate) { passwd(t, "-D", pw, g.Username) }
	return h
}

// gateOnline connects g with its own (legitimate) status will and marks it
// online, the way the edge does.
func (h *secHub) gateOnline(t *testing.T, g ingesttest.Gate) paho.Client {
	t.Helper()
	c, err := connect(t, willOpts(h.url, g, g, g.ID))
	if err != nil {
		t.Fatal(err)
	}
	on, _ := json.Marshal(wire.Status{Schema: 1, GateID: g.ID, Online: true, At: time.Now().UnixMilli()})
	c.Publish(wire.StatusTopic(g.School, g.ID), 1, true, on).Wait()
	waitFor(t, func() bool { return h.count(t, `SELECT online FROM gates WHERE id=?`, g.ID) == 1 })
	return c
}

func willOpts(url string, login, willOf ingesttest.Gate, clientID string) *paho.ClientOptions {
	off, _ := json.Marshal(wire.Status{Schema: 1, GateID: willOf.ID, Online: false})
	return clientOpts(url, clientID, login.Username, login.Password).
		SetWill(wire.StatusTopic(willOf.School, willOf.ID), string(off), 1, true)
}

// retainedGallery returns the retained announcement gate g reads.
func (h *secHub) retainedGallery(t *testing.T, g ingesttest.Gate) wire.GalleryAnnounce {
	t.Helper()
	c, err := connect(t, clientOpts(h.url, g.ID, g.Username, g.Password))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(50)
	got := make(chan []byte, 4)
	c.Subscribe(wire.GalleryTopic(g.School), 1, func(_ paho.Client, m paho.Message) { got <- m.Payload() }).Wait()
	select {
	case p := <-got:
		var a wire.GalleryAnnounce
		if err := json.Unmarshal(p, &a); err != nil {
			t.Fatalf("retained gallery %q: %v", p, err)
		}
		return a
	case <-time.After(5 * time.Second):
		t.Fatal("no retained gallery announcement")
	}
	return wire.GalleryAnnounce{}
}

// A gate's last will goes through the same rule as its publishes, on both
// brokers: a will for another school's gate, for the school's retained
// gallery announcement or for another gate's status is never published.
// The embedded broker refuses such a will at CONNECT (and a retained event
// too: only the status may be retained); mosquitto 2.0 gives plugins no
// view of the will, so it accepts the connection and its ACL drops the
// will when it would be sent. The gate's own status will still works.
func TestSecurityWillACL(t *testing.T) {
	for _, kind := range secBrokers {
		t.Run(kind, func(t *testing.T) {
			h := startSecHub(t, kind)
			a, a2, b := h.gates[0], h.gates[1], h.gates[2]
			if err := h.announce(a.School, 3); err != nil {
				t.Fatal(err)
			}
			h.gateOnline(t, a2)
			evB := ingesttest.Event(b, h.pupils[b.School][0], time.Now())
			evA := ingesttest.Event(a, h.pupils[a.School][0], time.Now())
			offA2, _ := json.Marshal(wire.Status{Schema: 1, GateID: a2.ID, Online: false})
			cases := []struct {
				name, topic string
				payload     []byte
				retain      bool
			}{
				{"another school's gate events", wire.EventTopic(b.School, b.ID), ingesttest.Payload(evB), false},
				{"retained gallery announcement", wire.GalleryTopic(a.School),
					[]byte(`{"schema":1,"version":999999,"url":"http://evil.example/g"}`), true},
				{"another gate's status", wire.StatusTopic(a2.School, a2.ID), offA2, true},
			}
			if kind == "embedded" {
				cases = append(cases, struct {
					name, topic string
					payload     []byte
					retain      bool
				}{"own events, retained", wire.EventTopic(a.School, a.ID), ingesttest.Payload(evA), true})
			}
			for _, tc := range cases {
				px := newProxy(t, h.url[len("tcp://"):])
				o := clientOpts("tcp://"+px.addr(), a.ID, a.Username, a.Password).
					SetWill(tc.topic, string(tc.payload), 1, tc.retain)
				if _, err := connect(t, o); err == nil && kind == "embedded" {
					t.Errorf("%s: will accepted at CONNECT", tc.name)
				}
				px.cut() // were the connection open, this would send the will
			}
			// An allowed event afterwards: by the time it is stored, a will would have been too.
			c, err := connect(t, clientOpts(h.url, a.ID, a.Username, a.Password))
			if err != nil {
				t.Fatal(err)
			}
			ok := ingesttest.Event(a, h.pupils[a.School][1], time.Now())
			publishOK(t, c, wire.EventTopic(a.School, a.ID), ingesttest.Payload(ok))
			waitFor(t, func() bool { return h.count(t, `SELECT count(*) FROM events WHERE event_id=?`, ok.EventID) == 1 })
			c.Disconnect(50)
			time.Sleep(300 * time.Millisecond)
			if n := h.count(t, `SELECT count(*) FROM events WHERE event_id IN (?, ?)`, evB.EventID, evA.EventID); n != 0 {
				t.Errorf("%d will events stored", n)
			}
			if h.count(t, `SELECT count(*) FROM daily_attendance WHERE pupil_id=?`, evB.StudentID) != 0 {
				t.Error("another school's pupil marked present by a will")
			}
			if got := h.retainedGallery(t, a); got.Version != 3 {
				t.Errorf("retained gallery replaced: version %d", got.Version)
			}
			if h.count(t, `SELECT online FROM gates WHERE id=?`, a2.ID) != 1 {
				t.Error("another gate marked offline by a will")
			}
			// The gate's own status will is accepted and sent when the link dies.
			h.gateOnline(t, a)
			px := newProxy(t, h.url[len("tcp://"):])
			if _, err := connect(t, willOpts("tcp://"+px.addr(), a, a, a.ID)); err != nil {
				t.Fatalf("own status will refused: %v", err)
			}
			px.cut()
			waitFor(t, func() bool { return h.count(t, `SELECT online FROM gates WHERE id=?`, a.ID) == 0 })
		})
	}
}

// MQTT 5 adds two more ways to publish: a delayed will and topic aliases.
// Neither crosses the ACL on either broker (the embedded broker refuses
// the will at CONNECT and offers no topic aliases).
func TestSecurityMQTT5WillDelayAndTopicAlias(t *testing.T) {
	for _, kind := range secBrokers {
		t.Run(kind, func(t *testing.T) {
			h := startSecHub(t, kind)
			a, b := h.gates[0], h.gates[2]
			addr := h.url[len("tcp://"):]
			evB := ingesttest.Event(b, h.pupils[b.School][0], time.Now())
			// A delayed will (1 s) for another school's gate is refused at CONNECT.
			rc, err := rawConnect5(addr, a, &rawWill{topic: wire.EventTopic(b.School, b.ID),
				payload: ingesttest.Payload(evB), qos: 1, delay: 1})
			if err == nil {
				if kind == "embedded" {
					t.Error("delayed will for another gate accepted at CONNECT")
				}
				rc.close() // mosquitto: the will is due in 1 s; its ACL must drop it
			}
			// A topic alias set on a refused topic, then used with an empty topic.
			rc, err = rawConnect5(addr, a, nil)
			if err != nil {
				t.Fatal(err)
			}
			evB2 := ingesttest.Event(b, h.pupils[b.School][1], time.Now())
			rc.publish(wire.EventTopic(b.School, b.ID), 1, 1, ingesttest.Payload(evB2))
			rc.publish("", 1, 2, ingesttest.Payload(evB2))
			evA := ingesttest.Event(a, h.pupils[a.School][0], time.Now())
			rc.publish(wire.EventTopic(a.School, a.ID), 2, 3, ingesttest.Payload(evA))
			rc.publish("", 2, 4, ingesttest.Payload(evB2))
			time.Sleep(2500 * time.Millisecond) // past the will delay
			rc.close()
			if n := h.count(t, `SELECT count(*) FROM events WHERE gate_id=?`, b.ID); n != 0 {
				t.Fatalf("%d events stored for another school's gate", n)
			}
		})
	}
}

// One gate's credentials cannot take another gate's client ID: the real
// gate stays connected (with the probe's client ID it was kicked 4 times
// in 6 s), and the intruder's session is its own.
func TestSecurityClientIDBoundToUsername(t *testing.T) {
	for _, kind := range secBrokers {
		t.Run(kind, func(t *testing.T) {
			h := startSecHub(t, kind)
			a, a2 := h.gates[0], h.gates[1]
			var lost atomic.Int32
			o := clientOpts(h.url, a2.ID, a2.Username, a2.Password).
				SetConnectionLostHandler(func(paho.Client, error) { lost.Add(1) })
			real, err := connect(t, o)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 3; i++ {
				intruder, err := connect(t, clientOpts(h.url, a2.ID, a.Username, a.Password))
				if err != nil {
					t.Fatal(err)
				}
				// The intruder still publishes only as itself.
				ev := ingesttest.Event(a, h.pupils[a.School][i], time.Now())
				publishOK(t, intruder, wire.EventTopic(a.School, a.ID), ingesttest.Payload(ev))
				intruder.Disconnect(50)
			}
			time.Sleep(500 * time.Millisecond)
			if n := lost.Load(); n != 0 || !real.IsConnectionOpen() {
				t.Fatalf("the real gate lost its connection %d times", n)
			}
			ev := ingesttest.Event(a2, h.pupils[a2.School][5], time.Now())
			publishOK(t, real, wire.EventTopic(a2.School, a2.ID), ingesttest.Payload(ev))
			waitFor(t, func() bool { return h.count(t, `SELECT count(*) FROM events WHERE gate_id=?`, a.ID) == 3 })
		})
	}
}

// Rotating a gate's password or deactivating it disconnects its open
// session within a second, and the old password does not log in again.
func TestSecurityRotateDisconnects(t *testing.T) {
	for _, kind := range secBrokers {
		for _, action := range []string{"rotate", "deactivate"} {
			t.Run(kind+"/"+action, func(t *testing.T) {
				h := startSecHub(t, kind)
				g, other := h.gates[0], h.gates[1]
				lost := make(chan time.Time, 4)
				o := clientOpts(h.url, g.ID, g.Username, g.Password).
					SetConnectionLostHandler(func(paho.Client, error) { lost <- time.Now() })
				if _, err := connect(t, o); err != nil {
					t.Fatal(err)
				}
				var otherLost atomic.Int32
				oo := clientOpts(h.url, other.ID, other.Username, other.Password).
					SetConnectionLostHandler(func(paho.Client, error) { otherLost.Add(1) })
				if _, err := connect(t, oo); err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				if action == "rotate" {
					h.rotate(t, g)
				} else {
					h.deactivate(t, g)
				}
				select {
				case at := <-lost:
					if d := at.Sub(start); d > time.Second {
						t.Fatalf("disconnected after %s, want within 1s", d)
					}
				case <-time.After(3 * time.Second):
					t.Fatal("the session with the old credentials stayed open")
				}
				if _, err := connect(t, clientOpts(h.url, g.ID, g.Username, g.Password)); err == nil {
					t.Fatal("old password logged in again")
				}
				if otherLost.Load() != 0 {
					t.Fatal("another gate was disconnected")
				}
			})
		}
	}
}
