package broker_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/broker"
)

// pluginSetup is a directory with the auth plugin built, a password file for
// the hub and two gates, and their ACL.
type pluginSetup struct {
	dir, so, acl, pw, state string
	g1, g2                  broker.Gate
}

const gatePass1, gatePass2 = "right-1", "right-2"

func newPluginSetup(t *testing.T) *pluginSetup {
	t.Helper()
	for _, bin := range []string{mosquittoBin, "/usr/bin/mosquitto_passwd"} {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("%s is required (apt-get install mosquitto): %v", bin, err)
		}
	}
	dir := t.TempDir()
	p := &pluginSetup{
		dir: dir, so: buildAuthPlugin(t, dir), acl: filepath.Join(dir, "acl"), pw: filepath.Join(dir, "passwd"),
		state: filepath.Join(dir, "diemdanh-lockouts"),
		g1:    broker.Gate{School: "thcs-a", ID: "gate1", Username: "thcs-a.gate1"},
		g2:    broker.Gate{School: "thcs-a", ID: "gate2", Username: "thcs-a.gate2"},
	}
	acl, err := broker.RenderMosquittoACL(hubUser, []broker.Gate{p.g1, p.g2})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.acl, []byte(acl), 0o600); err != nil {
		t.Fatal(err)
	}
	for i, u := range [][2]string{{hubUser, hubPass}, {p.g1.Username, gatePass1}, {p.g2.Username, gatePass2}} {
		args := []string{"-b", p.pw, u[0], u[1]}
		if i == 0 {
			args = []string{"-b", "-c", p.pw, u[0], u[1]}
		}
		if out, err := exec.Command("/usr/bin/mosquitto_passwd", args...).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_passwd: %v: %s", err, out)
		}
	}
	return p
}

func (p *pluginSetup) log(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(p.dir, "mosquitto.log"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// stateLines is the state file's lines for key ("u:<name>"), each "<n> <last> <until> <key>".
func (p *pluginSetup) stateLines(t *testing.T, key string) []string {
	t.Helper()
	b, err := os.ReadFile(p.state)
	if err != nil {
		t.Fatalf("lockout state file: %v", err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasSuffix(l, " "+key) {
			out = append(out, l)
		}
	}
	return out
}

// TestFaultMosquittoLockoutSurvivesRestart: Debian's mosquitto with the
// DiemDanh auth plugin and plugin_opt_lockout_state_file locks a gate
// username after wrong passwords; mosquitto is killed with SIGKILL right
// after the lock starts (so the lock must already be on disk) and started
// again on the same state file. The right password is still refused until
// the lock ends, then accepted, and the good login removes the counter from
// the file. Another gate's failures below the limit survive too: one more
// locks it.
func TestFaultMosquittoLockoutSurvivesRestart(t *testing.T) {
	const lock = 5 * time.Second // plugin_opt_lockout_seconds; the restart must take less
	p := newPluginSetup(t)
	conf, addr := writeMosquittoConf(t, p.dir, p.so, p.acl, p.pw, map[string]string{
		"max_failures": "3", "address_max_failures": "50", "lockout_seconds": "5", "lockout_max_seconds": "10",
	})
	url := "tcp://" + addr
	cmd := startMosquittoConf(t, p.dir, conf, addr)
	if !strings.Contains(p.log(t), "diemdanh-lockouts: No such file or directory; starting with no lockouts") {
		t.Fatalf("a missing state file is not reported as an empty state:\n%s", p.log(t))
	}
	refused(t, url, p.g2.Username, "wrong", "g2 1st failure")
	refused(t, url, p.g2.Username, "wrong", "g2 2nd failure")
	refused(t, url, p.g1.Username, "wrong", "g1 1st failure")
	refused(t, url, p.g1.Username, "wrong", "g1 2nd failure")
	refused(t, url, p.g1.Username, "wrong", "g1 3rd failure") // starts the lock
	lockedAt := time.Now()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if l := p.stateLines(t, "u:"+p.g1.Username); len(l) != 1 || !strings.HasPrefix(l[0], "3 ") {
		t.Fatalf("state file lines for g1 after SIGKILL: %q, want one with 3 failures", l)
	}

	startMosquittoConf(t, p.dir, conf, addr)
	if !strings.Contains(p.log(t), "diemdanh-lockouts: 3 counters, 1 locked") {
		t.Fatalf("the restarted mosquitto did not load the lockouts (g1, g2 and the address):\n%s", p.log(t))
	}
	refused(t, url, p.g1.Username, gatePass1, "right password after the restart, during the lock")
	if since := time.Since(lockedAt); since >= lock {
		t.Fatalf("the refusal came %v after the lock began, after the lock's end: it proves nothing", since)
	}
	accepted(t, url, hubUser, hubPass, "hub on the same address during g1's lock").Disconnect(50)
	time.Sleep(time.Until(lockedAt.Add(lock + 300*time.Millisecond)))
	accepted(t, url, p.g1.Username, gatePass1, "right password after the lock").Disconnect(50)
	waitFor(t, func() bool { return len(p.stateLines(t, "u:"+p.g1.Username)) == 0 })

	// g2's two failures were written with g1's lock: its third locks it.
	refused(t, url, p.g2.Username, "wrong", "g2 3rd failure, after the restart")
	refused(t, url, p.g2.Username, gatePass2, "g2's right password after its 3rd failure")
	if !strings.Contains(p.log(t), "user thcs-a.gate2 locked out for 5 s after 3 failed logins") {
		t.Fatalf("no lock line for g2 in the log:\n%s", p.log(t))
	}
}

// TestFaultMosquittoCorruptLockoutState: a state file that does not parse
// as a whole (each case would lock g1 if its valid lines were kept) is
// logged with the reason and ignored: mosquitto starts and g1 logs in.
func TestFaultMosquittoCorruptLockoutState(t *testing.T) {
	until := time.Now().Add(5 * time.Minute).Unix()
	locked := fmt.Sprintf("9 %d.000 %d.000 u:thcs-a.gate1\n", time.Now().Unix(), until)
	const header = "# diemdanh_auth lockouts v1\n"
	var many strings.Builder
	for i := 0; i < 10001; i++ { // the plugin writes at most 10,000
		fmt.Fprintf(&many, "3 %d.000 0.000 u:spray-%d\n", time.Now().Unix(), i)
	}
	cases := []struct{ name, content, reason string }{
		{"binary", header + locked + "\xff\xfe garbage\n", "bad failure count"},
		{"NUL byte", header + locked + "3 1.0\x00 0.0 u:x\n", "no end of line"},
		{"no header", locked, "not a diemdanh_auth lockout file"},
		{"truncated", header + locked + "3 1764979200", "no end of line"},
		{"long line", header + locked + "3 1.0 1.0 u:" + strings.Repeat("x", 5000) + "\n", "line too long"},
		{"too many lines", header + locked + many.String(), "too many lines"},
		{"bad key escape", header + locked + "3 1.0 0.0 u:a%zz\n", "bad key"},
		{"empty", "", "empty file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newPluginSetup(t)
			if err := os.WriteFile(p.state, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			conf, addr := writeMosquittoConf(t, p.dir, p.so, p.acl, p.pw, nil)
			startMosquittoConf(t, p.dir, conf, addr)
			want := "diemdanh-lockouts:"
			log := p.log(t)
			i := strings.Index(log, want)
			if i < 0 || !strings.Contains(log[i:], tc.reason+"; ignored, starting with no lockouts") {
				t.Fatalf("no log line %q for the corrupt state file:\n%s", tc.reason, log)
			}
			accepted(t, "tcp://"+addr, p.g1.Username, gatePass1, "g1 with a corrupt state file").Disconnect(50)
		})
	}
	// The same valid line alone does lock g1: the cases above test the parser, not a typo.
	p := newPluginSetup(t)
	if err := os.WriteFile(p.state, []byte(header+locked), 0o600); err != nil {
		t.Fatal(err)
	}
	conf, addr := writeMosquittoConf(t, p.dir, p.so, p.acl, p.pw, nil)
	startMosquittoConf(t, p.dir, conf, addr)
	refused(t, "tcp://"+addr, p.g1.Username, gatePass1, "g1 locked by a valid state file")
}
