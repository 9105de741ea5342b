package broker_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/diemdanh/diemdanh/hub/broker"
	"github.com/diemdanh/diemdanh/hub/ingest/ingesttest"
	"github.com/diemdanh/diemdanh/models/wire"
)

// Every event whose PUBACK the gate received is already a committed row:
// checked right after each token completes, from many concurrent gates.
func TestEmbeddedCommitBeforePuback(t *testing.T) {
	f := startHub(t, nil, nil)
	url := "tcp://" + f.emb.Addr()
	var wg sync.WaitGroup
	var checked atomic.Int64
	for gi, g := range f.gates {
		c, err := connect(t, clientOpts(url, "gate-"+g.ID, g.Username, g.Password))
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func(gi int, g ingesttest.Gate) {
			defer wg.Done()
			var toks []paho.Token
			var ids []string
			for i := 0; i < 150; i++ {
				ev := ingesttest.Event(g, f.pupils[g.School][i%10], time.Now())
				ids = append(ids, ev.EventID)
				toks = append(toks, c.Publish(wire.EventTopic(g.School, g.ID), 1, false, ingesttest.Payload(ev)))
			}
			for i, tok := range toks {
				if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
					t.Errorf("publish %d: %v", i, tok.Error())
					return
				}
				var n int
				if err := f.db.R.QueryRow(`SELECT count(*) FROM events WHERE event_id = ?`, ids[i]).Scan(&n); err != nil || n != 1 {
					t.Errorf("event %s acked but not committed (n=%d, err=%v)", ids[i], n, err)
					return
				}
				checked.Add(1)
			}
		}(gi, g)
	}
	wg.Wait()
	if checked.Load() != int64(150*len(f.gates)) {
		t.Fatalf("checked %d", checked.Load())
	}
}

func TestEmbeddedACL(t *testing.T) {
	f := startHub(t, nil, nil)
	url := "tcp://" + f.emb.Addr()
	a, a2, b := f.gates[0], f.gates[1], f.gates[2] // a, a2: school thcs-a; b: thcs-b
	if err := f.emb.Announce(context.Background(), "thcs-a", wire.GalleryAnnounce{Schema: 1, Version: 7, URL: "/api/v1/gates/gallery"}); err != nil {
		t.Fatal(err)
	}
	if err := f.emb.Announce(context.Background(), "thcs-b", wire.GalleryAnnounce{Schema: 1, Version: 9}); err != nil {
		t.Fatal(err)
	}

	t.Run("wrong password refused", func(t *testing.T) {
		if _, err := connect(t, clientOpts(url, "x1", a.Username, "wrong")); err == nil {
			t.Fatal("connected with a wrong password")
		}
		if _, err := connect(t, clientOpts(url, "x2", "nobody", a.Password)); err == nil {
			t.Fatal("connected with an unknown username")
		}
	})

	t.Run("reads own gallery, not another school's", func(t *testing.T) {
		c, err := connect(t, clientOpts(url, "acl-read-"+a.ID, a.Username, a.Password))
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan wire.GalleryAnnounce, 1)
		tok := c.Subscribe(wire.GalleryTopic("thcs-a"), 1, func(_ paho.Client, m paho.Message) {
			var ga wire.GalleryAnnounce
			json.Unmarshal(m.Payload(), &ga)
			got <- ga
		})
		tok.Wait()
		if r := tok.(*paho.SubscribeToken).Result()[wire.GalleryTopic("thcs-a")]; r != 1 {
			t.Fatalf("own gallery subscribe granted %d", r)
		}
		select {
		case ga := <-got:
			if ga.Version != 7 {
				t.Fatalf("retained announce version %d", ga.Version)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no retained gallery announce")
		}
		for _, filter := range []string{wire.GalleryTopic("thcs-b"), "diemdanh/v1/#", "diemdanh/v1/+/gallery",
			wire.EventTopic("thcs-a", a2.ID)} {
			tok := c.Subscribe(filter, 1, func(paho.Client, paho.Message) { t.Errorf("received on %s", filter) })
			tok.Wait()
			if r := tok.(*paho.SubscribeToken).Result()[filter]; r != 0x80 {
				t.Fatalf("subscribe %s granted %d, want failure 0x80", filter, r)
			}
		}
		time.Sleep(300 * time.Millisecond)
	})

	for _, tc := range []struct {
		name  string
		topic string
		ev    func() wire.Event
	}{
		{"as another gate of the same school", wire.EventTopic(a2.School, a2.ID), func() wire.Event {
			return ingesttest.Event(a2, f.pupils["thcs-a"][0], time.Now())
		}},
		{"to another school", wire.EventTopic(b.School, b.ID), func() wire.Event {
			return ingesttest.Event(b, f.pupils["thcs-b"][0], time.Now())
		}},
		{"to the gallery topic", wire.GalleryTopic("thcs-a"), func() wire.Event {
			return ingesttest.Event(a, f.pupils["thcs-a"][0], time.Now())
		}},
	} {
		t.Run("cannot publish "+tc.name, func(t *testing.T) {
			lost := make(chan error, 1)
			o := clientOpts(url, "acl-pub-"+a.ID, a.Username, a.Password).
				SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err })
			c, err := connect(t, o)
			if err != nil {
				t.Fatal(err)
			}
			ev := tc.ev()
			c.Publish(tc.topic, 1, false, ingesttest.Payload(ev))
			select {
			case <-lost: // MQTT 3.1.1: the broker drops a client that publishes where it may not
			case <-time.After(5 * time.Second):
				t.Fatal("broker did not disconnect the offending gate")
			}
			if n := f.count(t, `SELECT count(*) FROM events WHERE event_id = ?`, ev.EventID); n != 0 {
				t.Fatal("forbidden event was stored")
			}
		})
	}
	// The gallery announce was not overwritten by the forbidden publish.
	c, err := connect(t, clientOpts(url, "acl-check-"+a.ID, a.Username, a.Password))
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 1)
	c.Subscribe(wire.GalleryTopic("thcs-a"), 1, func(_ paho.Client, m paho.Message) { got <- m.Payload() }).Wait()
	select {
	case p := <-got:
		var ga wire.GalleryAnnounce
		if json.Unmarshal(p, &ga) != nil || ga.Version != 7 {
			t.Fatalf("gallery topic overwritten: %s", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no retained announce")
	}
}

func TestEmbeddedLoginLockout(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 11, 20, 7, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	f := startHub(t, func(c *broker.Config) {
		c.Lockout = broker.LockoutConfig{FreeFailures: 3, Base: 10 * time.Second, Max: time.Minute}
	}, clock)
	url := "tcp://" + f.emb.Addr()
	g := f.gates[0]
	for i := 0; i < 4; i++ {
		if _, err := connect(t, clientOpts(url, "lock", g.Username, "guess")); err == nil {
			t.Fatal("wrong password accepted")
		}
	}
	// Locked: even the right password is refused now.
	if _, err := connect(t, clientOpts(url, "lock", g.Username, g.Password)); err == nil {
		t.Fatal("right password accepted during lockout")
	}
	// Another gate (same IP, few failures) is not affected.
	if _, err := connect(t, clientOpts(url, "other", f.gates[1].Username, f.gates[1].Password)); err != nil {
		t.Fatalf("other gate refused: %v", err)
	}
	advance(11 * time.Second)
	if _, err := connect(t, clientOpts(url, "lock", g.Username, g.Password)); err != nil {
		t.Fatalf("right password refused after lockout expired: %v", err)
	}
	// Exponential: each failure past the free ones doubles the lockout
	// (attempts during a lockout are refused without a password check).
	for i := 0; i < 4; i++ {
		connect(t, clientOpts(url, "lock", g.Username, "guess"))
	}
	advance(11 * time.Second) // first lockout (10 s) over
	connect(t, clientOpts(url, "lock", g.Username, "guess"))
	advance(11 * time.Second) // second lockout is 20 s
	if _, err := connect(t, clientOpts(url, "lock", g.Username, g.Password)); err == nil {
		t.Fatal("lockout did not grow after more failures")
	}
	advance(time.Minute)
	if _, err := connect(t, clientOpts(url, "lock", g.Username, g.Password)); err != nil {
		t.Fatalf("still locked after max lockout: %v", err)
	}

	// Failures spread over time are forgiven: 3 now, 3 more after a quiet
	// period longer than the maximum lockout, and the gate is not locked.
	for i := 0; i < 3; i++ {
		connect(t, clientOpts(url, "lock", g.Username, "guess"))
	}
	advance(2 * time.Minute)
	for i := 0; i < 3; i++ {
		connect(t, clientOpts(url, "lock", g.Username, "guess"))
	}
	if _, err := connect(t, clientOpts(url, "lock", g.Username, g.Password)); err != nil {
		t.Fatalf("locked out by failures spread over time: %v", err)
	}

	// Per-IP: spraying usernames from one address locks the address.
	for i := 0; i < 16; i++ {
		connect(t, clientOpts(url, "spray", fmt.Sprintf("user%d", i), "x"))
	}
	if _, err := connect(t, clientOpts(url, "ok", f.gates[2].Username, f.gates[2].Password)); err == nil {
		t.Fatal("address not locked after a username spray")
	}
}

func TestEmbeddedTLS(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t)
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cert, certPEM, 0o600)
	os.WriteFile(key, keyPEM, 0o600)
	f := startHub(t, func(c *broker.Config) { c.TLSCert, c.TLSKey = cert, key }, nil)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	g := f.gates[0]
	o := clientOpts("ssl://"+f.emb.Addr(), "tls1", g.Username, g.Password).
		SetTLSConfig(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	c, err := connect(t, o)
	if err != nil {
		t.Fatal(err)
	}
	ev := ingesttest.Event(g, f.pupils[g.School][0], time.Now())
	if tok := c.Publish(wire.EventTopic(g.School, g.ID), 1, false, ingesttest.Payload(ev)); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	if n := f.count(t, `SELECT count(*) FROM events WHERE event_id=?`, ev.EventID); n != 1 {
		t.Fatal("event over TLS not stored")
	}
	// Plain TCP to the TLS port fails.
	if _, err := connect(t, clientOpts("tcp://"+f.emb.Addr(), "plain", g.Username, g.Password).SetConnectTimeout(time.Second)); err == nil {
		t.Fatal("plain connection accepted by the TLS listener")
	}
}

func TestEmbeddedStatusHeartbeatAndWill(t *testing.T) {
	f := startHub(t, nil, nil)
	g := f.gates[0]
	will, _ := json.Marshal(wire.Status{Schema: 1, GateID: g.ID, Online: false})
	px := newProxy(t, f.emb.Addr())
	o := clientOpts("tcp://"+px.addr(), "hb", g.Username, g.Password).
		SetWill(wire.StatusTopic(g.School, g.ID), string(will), 1, true)
	c, err := connect(t, o)
	if err != nil {
		t.Fatal(err)
	}
	on, _ := json.Marshal(wire.Status{Schema: 1, GateID: g.ID, Online: true, At: time.Now().UnixMilli()})
	c.Publish(wire.StatusTopic(g.School, g.ID), 1, true, on).Wait()
	hb, _ := json.Marshal(wire.Heartbeat{Schema: 1, GateID: g.ID, At: time.Now().Add(-2 * time.Second).UnixMilli(), OutboxDepth: 4})
	c.Publish(wire.HeartbeatTopic(g.School, g.ID), 0, false, hb).Wait()
	waitFor(t, func() bool {
		return f.count(t, `SELECT count(*) FROM gates WHERE id=? AND online=1 AND clock_skew_ms BETWEEN 1500 AND 4000 AND last_heartbeat LIKE '%"outbox_depth":4%'`, g.ID) == 1
	})
	// Kill the connection without DISCONNECT: the last will marks the gate offline.
	px.cut()
	waitFor(t, func() bool { return f.count(t, `SELECT online FROM gates WHERE id=?`, g.ID) == 0 })
}

// proxy is a TCP relay the test can cut, to drop a connection without DISCONNECT.
type proxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			a, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", target)
			if err != nil {
				a.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, a, b)
			p.mu.Unlock()
			go func() { io.Copy(a, b); a.Close() }()
			go func() { io.Copy(b, a); b.Close() }()
		}
	}()
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("condition not met within 10s")
}

func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hub"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(k)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

// A deactivated gate can no longer log in; one deactivated while connected
// has its events quarantined ("not active") and acknowledged.
func TestEmbeddedDeactivatedGate(t *testing.T) {
	f := startHub(t, nil, nil)
	g := f.gates[0]
	c, err := connect(t, clientOpts("tcp://"+f.emb.Addr(), "deact", g.Username, g.Password))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.db.W.Exec(`UPDATE gates SET active = 0 WHERE id = ?`, g.ID); err != nil {
		t.Fatal(err)
	}
	ev := ingesttest.Event(g, f.pupils[g.School][0], time.Now())
	if tok := c.Publish(wire.EventTopic(g.School, g.ID), 1, false, ingesttest.Payload(ev)); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	if f.count(t, `SELECT count(*) FROM events`) != 0 || f.count(t, `SELECT count(*) FROM quarantine WHERE reason LIKE '%not active%'`) != 1 {
		t.Fatal("event of a deactivated gate not quarantined")
	}
	c.Disconnect(50)
	if _, err := connect(t, clientOpts("tcp://"+f.emb.Addr(), "deact2", g.Username, g.Password)); err == nil {
		t.Fatal("deactivated gate logged in")
	}
}
