package broker_test

import (
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/diemdanh/diemdanh/hub/broker"
	"github.com/diemdanh/diemdanh/hub/ingest/ingesttest"
	"github.com/diemdanh/diemdanh/models/wire"
)

// refused asserts that mosquitto answered the login with a refusal (not a
// timeout or a network error).
func refused(t *testing.T, url, user, pass, why string) {
	t.Helper()
	_, err := connect(t, clientOpts(url, "probe-"+user, user, pass))
	if err == nil {
		t.Fatalf("%s: %s logged in", why, user)
	}
	if !errors.Is(err, packets.ErrorRefusedNotAuthorised) && !errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) {
		t.Fatalf("%s: %s: not a login refusal: %v", why, user, err)
	}
}

func accepted(t *testing.T, url, user, pass, why string) paho.Client {
	t.Helper()
	c, err := connect(t, clientOpts(url, "probe-"+user, user, pass))
	if err != nil {
		t.Fatalf("%s: %s refused: %v", why, user, err)
	}
	return c
}

// Wrong passwords are refused by the real mosquitto with the DiemDanh auth
// plugin, and repeated failures lock the username (then the address) out
// with an exponential back-off: during a lockout even the right password is
// refused, and it is accepted again once the lockout expires. The ACL file
// is still enforced, and the password file is re-read when it changes.
func TestMosquittoPluginLockout(t *testing.T) {
	for _, bin := range []string{mosquittoBin, "/usr/bin/mosquitto_passwd"} {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("%s is required (apt-get install mosquitto): %v", bin, err)
		}
	}
	g1 := broker.Gate{School: "thcs-a", ID: "gate1", Username: "thcs-a.gate1"}
	g2 := broker.Gate{School: "thcs-a", ID: "gate2", Username: "thcs-a.gate2"}
	acl, err := broker.RenderMosquittoACL(hubUser, []broker.Gate{g1, g2})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	aclPath, pw := filepath.Join(dir, "acl"), filepath.Join(dir, "passwd")
	os.WriteFile(aclPath, []byte(acl), 0o600)
	for i, u := range [][2]string{{hubUser, hubPass}, {g1.Username, "right-1"}, {g2.Username, "right-2"}} {
		args := []string{"-b", pw, u[0], u[1]}
		if i == 0 {
			args = []string{"-b", "-c", pw, u[0], u[1]}
		}
		if out, err := exec.Command("/usr/bin/mosquitto_passwd", args...).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_passwd: %v: %s", err, out)
		}
	}
	const lock = time.Second // plugin_opt_lockout_seconds
	url := runMosquittoPlugin(t, dir, aclPath, pw, map[string]string{
		"max_failures": "3", "address_max_failures": "12", "lockout_seconds": "1", "lockout_max_seconds": "3",
	})

	accepted(t, url, g1.Username, "right-1", "right password").Disconnect(50)
	refused(t, url, g1.Username, "wrong", "wrong password")
	refused(t, url, "nobody", "right-1", "unknown user")
	refused(t, url, g1.Username, "", "empty password")
	refused(t, url, g1.Username, "wrong", "3rd failure") // starts a 1 s lockout
	start := time.Now()
	refused(t, url, g1.Username, "right-1", "right password during the lockout")
	// The lockout is per username: another gate on the same address still logs in.
	accepted(t, url, g2.Username, "right-2", "other user during g1's lockout").Disconnect(50)
	time.Sleep(lock + 200*time.Millisecond - time.Since(start))
	accepted(t, url, g1.Username, "right-1", "right password after the lockout").Disconnect(50)
	if b, _ := os.ReadFile(filepath.Join(dir, "mosquitto.log")); !strings.Contains(string(b), "diemdanh_auth: user thcs-a.gate1 locked out for 1 s after 3 failed logins") {
		t.Fatalf("no lockout line in the mosquitto log:\n%s", b)
	}

	// A good login reset the counter; fail again: 3rd failure locks 1 s,
	// the next failure after it doubles the lockout to 2 s.
	for i := 0; i < 3; i++ {
		refused(t, url, g1.Username, "wrong", "wrong password")
	}
	time.Sleep(lock + 200*time.Millisecond)
	refused(t, url, g1.Username, "wrong", "4th failure") // 2 s lockout
	start = time.Now()
	time.Sleep(lock + 200*time.Millisecond)
	refused(t, url, g1.Username, "right-1", "right password during the doubled lockout")
	time.Sleep(2*lock + 200*time.Millisecond - time.Since(start))
	gate := accepted(t, url, g1.Username, "right-1", "right password after the doubled lockout")

	// The ACL still applies: the gate publishes only to its own topics and reads no gate topic.
	hub := accepted(t, url, hubUser, hubPass, "hub")
	got := make(chan string, 10)
	hub.Subscribe(broker.GateFilter, 1, func(_ paho.Client, m paho.Message) { got <- m.Topic() }).Wait()
	spy := make(chan string, 10)
	gate.Subscribe(broker.GateFilter, 1, func(_ paho.Client, m paho.Message) { spy <- m.Topic() }).Wait()
	ig := ingesttest.Gate{School: g1.School, ID: g1.ID}
	gate.Publish(wire.EventTopic(g2.School, g2.ID), 1, false, []byte("{}")).Wait()
	publishOK(t, gate, wire.EventTopic(g1.School, g1.ID), ingesttest.Payload(ingesttest.Event(ig, wire.UnknownStudent, time.Now())))
	select {
	case topic := <-got:
		if topic != wire.EventTopic(g1.School, g1.ID) {
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

	// The password file is re-read when it changes; old $6$ (salted SHA-512) lines work.
	salt := []byte("0123456789ab")
	sum := sha512.Sum512(append([]byte("old-secret"), salt...))
	line := "old-user:$6$" + base64.StdEncoding.EncodeToString(salt) + "$" + base64.StdEncoding.EncodeToString(sum[:]) + "\n"
	f, err := os.OpenFile(pw, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(line)
	f.Close()
	accepted(t, url, "old-user", "old-secret", "user added to the password file").Disconnect(50)
	refused(t, url, "old-user", "old-secreT", "wrong $6$ password")

	// Many failures from one address (different usernames each time, so no
	// username lockout) lock the address out: then even a fresh right login is refused.
	for i := 0; ; i++ {
		if i == 12 {
			t.Fatal("12 failures from one address did not lock it out")
		}
		if _, err := connect(t, clientOpts(url, "probe", g2.Username, "right-2")); err != nil {
			break
		}
		refused(t, url, "spray-"+string(rune('a'+i)), "x", "unknown user")
	}
	refused(t, url, hubUser, hubPass, "right password from a locked address")
}
