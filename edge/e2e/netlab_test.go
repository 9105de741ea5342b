package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// netLab is a network namespace the test makes for the gate, joined to
// the root namespace by two veth pairs on private /30 networks: the data
// link, between the gate and the hub's broker, which the test cuts; and
// the management link, over which the test reads the gate's /metrics and
// /healthz, which is never cut. Every name is unique per run and
// t.Cleanup removes the namespace and both links, also after a failure.
type netLab struct {
	ns             string
	hubIf, gateIf  string // the data link: root side, namespace side
	hubIP, gateIP  string
	mgmtGateIP     string // the gate's address on the management link
	drop           []string
	dropName, base string
}

// ipCmd runs a command of iproute2 (ip, tc) and returns its output.
func ipCmd(args ...string) (string, error) {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// newNetLab makes the namespace and its links. It fails the test with
// the reason when the machine cannot (not root, no iproute2, no network
// namespaces, no qdisc that drops packets).
func newNetLab(t *testing.T) *netLab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("network namespaces need root (euid %d): run the fault tests as root, as CI does", os.Geteuid())
	}
	for _, tool := range []string{"ip", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s (iproute2) is needed to make network namespaces: %v (deploy/setup-debian.sh installs it)", tool, err)
		}
	}
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	id := hex.EncodeToString(b)
	l := &netLab{ns: "diemdanh-netcut-" + id, hubIf: "dd" + id + "h0", gateIf: "dd" + id + "g0"}
	net3 := freeSubnet(t)
	l.base = fmt.Sprintf("10.203.%d.", net3)
	l.hubIP, l.gateIP, l.mgmtGateIP = l.base+"1", l.base+"2", l.base+"6"
	mgmtHost, mgmtGate := "dd"+id+"h1", "dd"+id+"g1"
	if _, err := ipCmd("ip", "netns", "add", l.ns); err != nil {
		t.Fatalf("cannot make a network namespace on this machine: %v", err)
	}
	t.Cleanup(func() {
		for _, c := range [][]string{{"ip", "link", "del", l.hubIf}, {"ip", "link", "del", mgmtHost}, {"ip", "netns", "del", l.ns}} {
			if out, err := ipCmd(c...); err != nil && !strings.Contains(out, "Cannot find") {
				t.Logf("cleanup: %v", err)
			}
		}
	})
	in := func(args ...string) []string { return append([]string{"ip", "netns", "exec", l.ns}, args...) }
	steps := [][]string{
		{"ip", "link", "add", l.hubIf, "type", "veth", "peer", "name", l.gateIf},
		{"ip", "link", "add", mgmtHost, "type", "veth", "peer", "name", mgmtGate},
		{"ip", "link", "set", l.gateIf, "netns", l.ns},
		{"ip", "link", "set", mgmtGate, "netns", l.ns},
		{"ip", "addr", "add", l.hubIP + "/30", "dev", l.hubIf},
		{"ip", "addr", "add", l.base + "5/30", "dev", mgmtHost},
		{"ip", "link", "set", l.hubIf, "up"},
		{"ip", "link", "set", mgmtHost, "up"},
		in("ip", "addr", "add", l.gateIP+"/30", "dev", l.gateIf),
		in("ip", "addr", "add", l.mgmtGateIP+"/30", "dev", mgmtGate),
		in("ip", "link", "set", l.gateIf, "up"),
		in("ip", "link", "set", mgmtGate, "up"),
		in("ip", "link", "set", "lo", "up"),
	}
	for _, s := range steps {
		if _, err := ipCmd(s...); err != nil {
			t.Fatalf("cannot set up the gate's network namespace: %v", err)
		}
	}
	l.pickDrop(t)
	return l
}

// freeSubnet picks a third octet whose 10.203.x.0/29 no interface uses.
func freeSubnet(t *testing.T) int {
	t.Helper()
	out, err := ipCmd("ip", "-o", "addr", "show")
	if err != nil {
		t.Fatalf("cannot list addresses: %v", err)
	}
	for i := 0; i < 64; i++ {
		n, err := rand.Int(rand.Reader, big.NewInt(256))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, fmt.Sprintf(" 10.203.%d.", n.Int64())) {
			return int(n.Int64())
		}
	}
	t.Fatal("no free 10.203.x.0/29 network for the test")
	return 0
}

// pickDrop chooses how the cut drops packets: netem with 100 % loss, or,
// where the kernel has no netem (sch_netem is a module some kernels lack),
// a FIFO qdisc of length 0, which drops every packet it is given just as
// silently. Neither sends a RST or a FIN: each side notices only by its
// keepalive.
func (l *netLab) pickDrop(t *testing.T) {
	t.Helper()
	tries := [][]string{{"netem", "loss", "100%"}, {"pfifo", "limit", "0"}}
	var errs []string
	for _, q := range tries {
		args := append([]string{"tc", "qdisc", "add", "dev", l.hubIf, "root"}, q...)
		if _, err := ipCmd(args...); err != nil {
			errs = append(errs, err.Error())
			continue
		}
		if _, err := ipCmd("tc", "qdisc", "del", "dev", l.hubIf, "root"); err != nil {
			t.Fatal(err)
		}
		l.drop, l.dropName = q, strings.Join(q, " ")
		return
	}
	t.Fatalf("no qdisc drops packets on this kernel: %s", strings.Join(errs, "; "))
}

// cut drops every packet of the data link, both ways.
func (l *netLab) cut(t *testing.T) {
	t.Helper()
	for _, c := range [][]string{
		append([]string{"tc", "qdisc", "add", "dev", l.hubIf, "root"}, l.drop...),
		append([]string{"ip", "netns", "exec", l.ns, "tc", "qdisc", "add", "dev", l.gateIf, "root"}, l.drop...),
	} {
		if _, err := ipCmd(c...); err != nil {
			t.Fatalf("cut: %v", err)
		}
	}
}

// restore lets the data link carry packets again.
func (l *netLab) restore(t *testing.T) {
	t.Helper()
	for _, c := range [][]string{
		{"tc", "qdisc", "del", "dev", l.hubIf, "root"},
		{"ip", "netns", "exec", l.ns, "tc", "qdisc", "del", "dev", l.gateIf, "root"},
	} {
		if _, err := ipCmd(c...); err != nil {
			t.Fatalf("restore: %v", err)
		}
	}
}

// command runs name with args inside the namespace.
func (l *netLab) command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", l.ns, name}, args...)...)
}
