package broker_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/diemdanh/diemdanh/hub/broker"
	"github.com/diemdanh/diemdanh/hub/ingest"
	"github.com/diemdanh/diemdanh/hub/ingest/ingesttest"
	"github.com/diemdanh/diemdanh/models/wire"
)

const mosquittoBin = "/usr/sbin/mosquitto"

// startMosquitto runs Debian's real mosquitto on a free loopback port with
// deploy/mosquitto's settings, a password file made by mosquitto_passwd
// and the given ACL. It returns tcp://addr.
func startMosquitto(t *testing.T, acl string, users map[string]string) string {
	t.Helper()
	for _, bin := range []string{mosquittoBin, "/usr/bin/mosquitto_passwd"} {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("%s is required (apt-get install mosquitto): %v", bin, err)
		}
	}
	dir := t.TempDir()
	pw := filepath.Join(dir, "passwd")
	names := make([]string, 0, len(users))
	for u := range users {
		names = append(names, u)
	}
	sort.Strings(names)
	for i, u := range names {
		args := []string{"-b", pw, u, users[u]}
		if i == 0 {
			args = []string{"-b", "-c", pw, u, users[u]}
		}
		if out, err := exec.Command("/usr/bin/mosquitto_passwd", args...).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_passwd: %v: %s", err, out)
		}
	}
	aclPath := filepath.Join(dir, "acl")
	if err := os.WriteFile(aclPath, []byte(acl), 0o600); err != nil {
		t.Fatal(err)
	}
	return runMosquittoFiles(t, dir, aclPath, pw)
}

// runMosquittoFiles starts mosquitto with deploy/mosquitto/mosquitto.conf
// (listener, paths and logging adapted) and the given ACL and password files.
// The password check is the DiemDanh auth plugin, built from
// deploy/mosquitto/plugin for the test; opts override its plugin_opt_ values.
func runMosquittoFiles(t *testing.T, dir, aclPath, pw string) string {
	t.Helper()
	return runMosquittoPlugin(t, dir, aclPath, pw, nil)
}

// buildAuthPlugin compiles deploy/mosquitto/plugin into dir. Missing gcc or
// headers fail the test: the shipped config cannot work without the plugin.
func buildAuthPlugin(t *testing.T, dir string) string {
	t.Helper()
	so := filepath.Join(dir, "diemdanh_auth.so")
	if out, err := exec.Command("sh", "../../deploy/mosquitto/plugin/build.sh", so).CombinedOutput(); err != nil {
		t.Fatalf("building the mosquitto auth plugin (needs gcc mosquitto-dev libmosquitto-dev libssl-dev): %v\n%s", err, out)
	}
	return so
}

func runMosquittoPlugin(t *testing.T, dir, aclPath, pw string, opts map[string]string) string {
	t.Helper()
	confPath, addr := writeMosquittoConf(t, dir, buildAuthPlugin(t, dir), aclPath, pw, opts)
	startMosquittoConf(t, dir, confPath, addr)
	return "tcp://" + addr
}

// writeMosquittoConf writes dir/mosquitto.conf for a free loopback port
// from the shipped config, with the plugin so and its state file in dir.
func writeMosquittoConf(t *testing.T, dir, so, aclPath, pw string, opts map[string]string) (confPath, addr string) {
	t.Helper()
	seen := map[string]bool{}
	// The shipped config, with paths and the listener swapped for the test.
	base, err := os.ReadFile("../../deploy/mosquitto/mosquitto.conf")
	if err != nil {
		t.Fatal(err)
	}
	addr = freeAddr(t)
	host, port, _ := net.SplitHostPort(addr)
	var conf []string
	for _, line := range strings.Split(string(base), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch f[0] {
		case "listener":
			line = "listener " + port + " " + host
		case "password_file":
			t.Fatal("mosquitto.conf sets password_file: the auth plugin checks passwords")
		case "plugin":
			line = "plugin " + so
			seen["plugin"] = true
		case "plugin_opt_password_file":
			line = "plugin_opt_password_file " + pw
			seen["password_file"] = true
		case "plugin_opt_lockout_state_file":
			line = "plugin_opt_lockout_state_file " + filepath.Join(dir, "diemdanh-lockouts")
		case "acl_file":
			line = "acl_file " + aclPath
		case "persistence_location":
			line = "persistence_location " + dir + "/"
		case "log_dest":
			line = "log_dest file " + filepath.Join(dir, "mosquitto.log")
		}
		if k, ok := strings.CutPrefix(f[0], "plugin_opt_"); ok && opts[k] != "" {
			line = f[0] + " " + opts[k]
			seen[k] = true
		}
		conf = append(conf, line)
	}
	for k := range opts {
		if !seen[k] {
			conf = append(conf, "plugin_opt_"+k+" "+opts[k])
		}
	}
	if !seen["plugin"] || !seen["password_file"] {
		t.Fatal("mosquitto.conf does not load the auth plugin with plugin_opt_password_file")
	}
	if os.Geteuid() == 0 { // mosquitto drops root to user "mosquitto", which cannot read our temp files
		conf = append(conf, "user root")
	}
	confPath = filepath.Join(dir, "mosquitto.conf")
	os.WriteFile(confPath, []byte(strings.Join(conf, "\n")+"\n"), 0o600)
	return confPath, addr
}

// startMosquittoConf runs mosquitto -c confPath until it listens on addr;
// the test's cleanup kills it.
func startMosquittoConf(t *testing.T, dir, confPath, addr string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(mosquittoBin, "-c", confPath)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "mosquitto.log"))
			t.Logf("mosquitto log:\n%s", b)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "mosquitto.log"))
			t.Fatalf("mosquitto did not start: %v\n%s\n%s", err, b, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cmd
}

type extFixture struct {
	*hubFixture
	url string
}

const hubUser, hubPass = "diemdanh-hub", "hub-service-secret"

func startExternal(t *testing.T) *extFixture {
	t.Helper()
	ctx := context.Background()
	f := &hubFixture{db: openDB(t)}
	var err error
	f.gates, f.pupils, err = ingesttest.Seed(ctx, f.db, []string{"thcs-a", "thcs-b"}, 2, 10)
	if err != nil {
		t.Fatal(err)
	}
	acl, err := broker.MosquittoACL(ctx, f.db, hubUser)
	if err != nil {
		t.Fatal(err)
	}
	users := map[string]string{hubUser: hubPass}
	for _, g := range f.gates {
		users[g.Username] = g.Password
	}
	return &extFixture{hubFixture: f, url: startMosquitto(t, acl, users)}
}

func (x *extFixture) startHub(t *testing.T) (*ingest.Ingester, *broker.External) {
	t.Helper()
	ing, err := ingest.New(x.db, ingest.Default(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ing.Start(context.Background())
	cfg := broker.Default()
	cfg.Mode = broker.ModeExternal
	cfg.External = broker.ExternalConfig{URL: x.url, Username: hubUser, Password: hubPass, ClientID: "diemdanh-hub-test"}
	ext, err := broker.NewExternal(context.Background(), cfg, ing, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !ext.Connected() {
		t.Fatal("hub not connected to mosquitto")
	}
	return ing, ext
}

func publishOK(t *testing.T, c paho.Client, topic string, p []byte) {
	t.Helper()
	if tok := c.Publish(topic, 1, false, p); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
}

func TestMosquittoACLAndIngest(t *testing.T) {
	x := startExternal(t)
	ing, ext := x.startHub(t)
	defer func() { ext.Close(); ing.Close() }()
	a, a2, b := x.gates[0], x.gates[1], x.gates[2]

	if _, err := connect(t, clientOpts(x.url, "bad1", a.Username, "wrong")); err == nil {
		t.Fatal("mosquitto accepted a wrong password")
	}
	if _, err := connect(t, clientOpts(x.url, "bad2", "nobody", "x")); err == nil {
		t.Fatal("mosquitto accepted an unknown user")
	}
	if _, err := connect(t, clientOpts(x.url, "anon", "", "")); err == nil {
		t.Fatal("mosquitto accepted an anonymous client")
	}

	if err := ext.Announce(context.Background(), "thcs-a", wire.GalleryAnnounce{Schema: 1, Version: 3}); err != nil {
		t.Fatal(err)
	}
	if err := ext.Announce(context.Background(), "thcs-b", wire.GalleryAnnounce{Schema: 1, Version: 4}); err != nil {
		t.Fatal(err)
	}
	c, err := connect(t, clientOpts(x.url, "gate-a", a.Username, a.Password))
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 10)
	c.Subscribe(wire.GalleryTopic("thcs-a"), 1, func(_ paho.Client, m paho.Message) { got <- m.Topic() }).Wait()
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("own gallery announce not received")
	}
	for _, filter := range []string{wire.GalleryTopic("thcs-b"), wire.EventTopic(b.School, b.ID), "diemdanh/v1/#"} {
		tok := c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) { got <- m.Topic() })
		tok.Wait()
		t.Logf("subscribe %s → %#x", filter, tok.(*paho.SubscribeToken).Result()[filter])
	}
	// Forbidden publishes: as another gate, to another school, to the gallery.
	forbidden := []wire.Event{ingesttest.Event(a2, x.pupils["thcs-a"][0], time.Now()),
		ingesttest.Event(b, x.pupils["thcs-b"][0], time.Now())}
	c.Publish(wire.EventTopic(a2.School, a2.ID), 1, false, ingesttest.Payload(forbidden[0])).WaitTimeout(3 * time.Second)
	c.Publish(wire.EventTopic(b.School, b.ID), 1, false, ingesttest.Payload(forbidden[1])).WaitTimeout(3 * time.Second)
	c.Publish(wire.GalleryTopic("thcs-a"), 1, true, []byte(`{"schema":1,"version":666}`)).WaitTimeout(3 * time.Second)
	// An allowed event afterwards arrives; by then the forbidden ones would have too.
	c2, err := connect(t, clientOpts(x.url, "gate-a-2", a.Username, a.Password))
	if err != nil {
		t.Fatal(err)
	}
	ok := ingesttest.Event(a, x.pupils["thcs-a"][1], time.Now())
	publishOK(t, c2, wire.EventTopic(a.School, a.ID), ingesttest.Payload(ok))
	waitFor(t, func() bool { return x.count(t, `SELECT count(*) FROM events WHERE event_id=?`, ok.EventID) == 1 })
	time.Sleep(200 * time.Millisecond)
	for _, ev := range forbidden {
		if n := x.count(t, `SELECT count(*) FROM events WHERE event_id=?`, ev.EventID); n != 0 {
			t.Fatalf("forbidden event %s/%s stored", ev.SchoolID, ev.GateID)
		}
	}
	c.Disconnect(100)
	for drained := false; !drained; {
		select {
		case topic := <-got:
			if topic != wire.GalleryTopic("thcs-a") {
				t.Fatalf("gate A received %s", topic)
			}
		default:
			drained = true
		}
	}
	// The retained announce was not overwritten by the gate.
	c3, _ := connect(t, clientOpts(x.url, "gate-a-3", a.Username, a.Password))
	ann := make(chan []byte, 1)
	c3.Subscribe(wire.GalleryTopic("thcs-a"), 1, func(_ paho.Client, m paho.Message) { ann <- m.Payload() }).Wait()
	select {
	case p := <-ann:
		if strings.Contains(string(p), "666") {
			t.Fatal("gate overwrote the gallery announce")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no retained announce")
	}
}

// An event the hub did not commit is not acknowledged, so mosquitto
// redelivers it to the hub's persistent session; events published while
// the hub is away are queued and delivered on reconnect.
func TestMosquittoRedeliversUncommitted(t *testing.T) {
	x := startExternal(t)
	ing1, ext1 := x.startHub(t)
	g := x.gates[0]
	c, err := connect(t, clientOpts(x.url, "gate-r", g.Username, g.Password))
	if err != nil {
		t.Fatal(err)
	}
	first := ingesttest.Event(g, x.pupils["thcs-a"][0], time.Now())
	publishOK(t, c, wire.EventTopic(g.School, g.ID), ingesttest.Payload(first))
	waitFor(t, func() bool { return x.count(t, `SELECT count(*) FROM events WHERE event_id=?`, first.EventID) == 1 })

	ing1.Close() // the database side is gone: nothing more can commit
	lost := ingesttest.Event(g, x.pupils["thcs-a"][1], time.Now())
	publishOK(t, c, wire.EventTopic(g.School, g.ID), ingesttest.Payload(lost))
	time.Sleep(300 * time.Millisecond) // delivered to the hub, refused, not acked
	ext1.Close()
	var queued []string
	for i := 0; i < 50; i++ { // published while the hub is offline
		ev := ingesttest.Event(g, x.pupils["thcs-a"][i%10], time.Now())
		queued = append(queued, ev.EventID)
		publishOK(t, c, wire.EventTopic(g.School, g.ID), ingesttest.Payload(ev))
	}
	if n := x.count(t, `SELECT count(*) FROM events`); n != 1 {
		t.Fatalf("%d events before the hub is back, want 1", n)
	}
	ing2, ext2 := x.startHub(t)
	defer func() { ext2.Close(); ing2.Close() }()
	waitFor(t, func() bool { return x.count(t, `SELECT count(*) FROM events`) == 52 })
	for _, id := range append(queued, lost.EventID, first.EventID) {
		if x.count(t, `SELECT count(*) FROM events WHERE event_id=?`, id) != 1 {
			t.Fatalf("event %s missing", id)
		}
	}
}

// An announcement made as soon as the hub's client is up reaches the gates,
// cycle after cycle. Under -race this covers paho's resume racing a publish
// made between the connection and the resume (External.connected).
func TestExternalAnnounceRightAfterConnect(t *testing.T) {
	x := startExternal(t)
	g := x.gates[0]
	const cycles = 12
	for i := 1; i <= cycles; i++ {
		ing, ext := x.startHub(t)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := ext.Announce(ctx, g.School, wire.GalleryAnnounce{Schema: 1, Version: int64(i), URL: "/g"})
		cancel()
		ext.Close()
		ing.Close()
		if err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
	}
	c, err := connect(t, clientOpts(x.url, "gate-ann", g.Username, g.Password))
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 1)
	c.Subscribe(wire.GalleryTopic(g.School), 1, func(_ paho.Client, m paho.Message) {
		select {
		case got <- m.Payload():
		default:
		}
	}).Wait()
	select {
	case b := <-got:
		a, err := wire.DecodeGalleryAnnounce(b)
		if err != nil || a.Version != cycles {
			t.Fatalf("retained announcement %s (%v), want version %d", b, err, cycles)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no retained announcement")
	}
}

// The files shipped in deploy/mosquitto work as they are with the real
// mosquitto and the auth plugin built from deploy/mosquitto/plugin: the demo
// gate publishes its events, the hub user receives them, the gate cannot
// read gate topics, wrong passwords are refused and, with the shipped
// plugin options, 5 in a row lock the username out.
func TestShippedMosquittoFiles(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"acl.example", "passwd.example"} {
		b, err := os.ReadFile("../../deploy/mosquitto/" + f)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, f), b, 0o600)
	}
	url := runMosquittoFiles(t, dir, filepath.Join(dir, "acl.example"), filepath.Join(dir, "passwd.example"))
	if _, err := connect(t, clientOpts(url, "x", "demo-gate", "wrong")); err == nil {
		t.Fatal("wrong password accepted")
	}
	hub, err := connect(t, clientOpts(url, "hub", "diemdanh-hub", "change-me-hub"))
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 10)
	hub.Subscribe(broker.GateFilter, 1, func(_ paho.Client, m paho.Message) { got <- m.Topic() }).Wait()
	gate, err := connect(t, clientOpts(url, "gate", "demo-gate", "change-me-gate"))
	if err != nil {
		t.Fatal(err)
	}
	spy := make(chan string, 10)
	gate.Subscribe(broker.GateFilter, 1, func(_ paho.Client, m paho.Message) { spy <- m.Topic() }).Wait()
	g := ingesttest.Gate{School: "demo", ID: "demo-gate"}
	publishOK(t, gate, wire.EventTopic("demo", "demo-gate"), ingesttest.Payload(ingesttest.Event(g, wire.UnknownStudent, time.Now())))
	gate.Publish(wire.EventTopic("demo", "other-gate"), 1, false, []byte("{}")).Wait()
	select {
	case topic := <-got:
		if topic != wire.EventTopic("demo", "demo-gate") {
			t.Fatalf("hub got %s", topic)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("hub did not receive the gate's event")
	}
	time.Sleep(300 * time.Millisecond)
	select {
	case topic := <-got:
		t.Fatalf("forbidden publish reached the hub: %s", topic)
	case topic := <-spy:
		t.Fatalf("gate read a gate topic: %s", topic)
	default:
	}
	for i := 0; i < 4; i++ {
		refused(t, url, "demo-gate", "wrong", "wrong password")
	}
	refused(t, url, "demo-gate", "wrong", "5th wrong password")
	refused(t, url, "demo-gate", "change-me-gate", "right password during the lockout")
}
