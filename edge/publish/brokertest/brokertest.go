// Package brokertest starts real MQTT brokers for the edge's tests: an
// embedded mochi-mqtt v2 server (in-process or in a child process that a
// test can kill) and Debian's mosquitto binary. Its Recorder hook is the
// receiver of the durability tests: it writes each received event's ID to
// a file and fsyncs it inside mochi's OnPublish, which runs before the
// broker sends the PUBACK, so an acknowledged event is never missing from
// the record even when the broker is killed with SIGKILL right after.
package brokertest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/diemdanh/diemdanh/models/wire"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// FreePort returns a loopback address with a currently free TCP port.
func FreePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Recorder is a mochi hook collecting the event IDs published on event
// topics, and the capture IDs published on unrecognised topics.
type Recorder struct {
	mqtt.HookBase
	mu    sync.Mutex
	ids   []string
	unIDs []string
	uns   []*wire.Unrecognised
	file  *os.File
}

// NewRecorder returns a recorder; with a non-empty path every ID is also
// appended to that file and fsynced before the broker acknowledges.
func NewRecorder(path string) (*Recorder, error) {
	r := &Recorder{}
	if path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, err
		}
		r.file = f
	}
	return r, nil
}

// ID names the hook.
func (r *Recorder) ID() string { return "event-recorder" }

// Provides says which hook methods are implemented.
func (r *Recorder) Provides(b byte) bool { return b == mqtt.OnPublish }

// OnPublish records events and unrecognised faces (runs before the
// PUBACK is written).
func (r *Recorder) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	_, _, kind, ok := wire.ParseGateTopic(pk.TopicName)
	if ok && kind == wire.TopicKindUnrecognised {
		id := "invalid"
		u, err := wire.DecodeUnrecognised(pk.Payload)
		if err == nil {
			id = u.CaptureID
		}
		r.mu.Lock()
		r.unIDs = append(r.unIDs, id)
		if u != nil {
			r.uns = append(r.uns, u)
		}
		r.mu.Unlock()
		return pk, nil
	}
	if !ok || kind != wire.TopicKindEvents {
		return pk, nil
	}
	id := "invalid"
	if ev, err := wire.DecodeEvent(pk.Payload); err == nil {
		id = ev.EventID
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ids = append(r.ids, id)
	if r.file != nil {
		if _, err := r.file.WriteString(id + "\n"); err != nil {
			return pk, err
		}
		if err := r.file.Sync(); err != nil {
			return pk, err
		}
	}
	return pk, nil
}

// IDs returns the recorded IDs in arrival order (with redeliveries).
func (r *Recorder) IDs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ids...)
}

// UnrecognisedIDs returns the capture IDs of the unrecognised faces
// received, in arrival order (with redeliveries; "invalid" for a payload
// that does not decode).
func (r *Recorder) UnrecognisedIDs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.unIDs...)
}

// Unrecognised returns the unrecognised faces received that decode, in
// arrival order (with redeliveries).
func (r *Recorder) Unrecognised() []*wire.Unrecognised {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*wire.Unrecognised(nil), r.uns...)
}

// ReadRecord reads the IDs a Recorder appended to path.
func ReadRecord(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if s := strings.TrimSpace(sc.Text()); s != "" {
			out = append(out, s)
		}
	}
	return out, nil
}

// Users maps username to password; nil allows everyone.
type Users map[string]string

// StartMochi serves an embedded broker on addr (host:port). rec may be nil.
func StartMochi(addr string, rec *Recorder, users Users) (*mqtt.Server, error) {
	return StartMochiTLS(addr, nil, rec, users)
}

// StartMochiTLS is StartMochi with TLS when tc is not nil.
func StartMochiTLS(addr string, tc *tls.Config, rec *Recorder, users Users) (*mqtt.Server, error) {
	s := mqtt.New(&mqtt.Options{InlineClient: false, Logger: slog.New(slog.DiscardHandler)})
	if users == nil {
		if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
			return nil, err
		}
	} else {
		var rules auth.AuthRules
		for u, p := range users {
			rules = append(rules, auth.AuthRule{Username: auth.RString(u), Password: auth.RString(p), Allow: true})
		}
		if err := s.AddHook(new(auth.Hook), &auth.Options{Ledger: &auth.Ledger{Auth: rules}}); err != nil {
			return nil, err
		}
	}
	if rec != nil {
		if err := s.AddHook(rec, nil); err != nil {
			return nil, err
		}
	}
	var l net.Listener
	var err error
	for i := 0; i < 50; i++ { // a just-closed port may linger briefly
		if l, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return nil, err
	}
	if tc != nil {
		l = tls.NewListener(l, tc)
	}
	if err := s.AddListener(listeners.NewNet("t1", l)); err != nil {
		l.Close()
		return nil, err
	}
	go func() { _ = s.Serve() }()
	return s, nil
}

// Mosquitto is a running Debian mosquitto process.
type Mosquitto struct {
	Addr string
	Cmd  *exec.Cmd
	Log  string
}

// MosquittoBin is the Debian package's broker binary.
const MosquittoBin = "/usr/sbin/mosquitto"

// StartMosquitto runs mosquitto on addr with persistence in dir (kept
// across restarts with the same dir) and anonymous access.
func StartMosquitto(dir, addr string) (*Mosquitto, error) {
	if _, err := os.Stat(MosquittoBin); err != nil {
		return nil, fmt.Errorf("mosquitto not installed (apt-get install mosquitto): %w", err)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "mosquitto.conf")
	// Run as the current user: started as root, mosquitto would switch to
	// the "mosquitto" user and could not write its persistence file here.
	who := "mosquitto"
	if u, err := user.Current(); err == nil {
		who = u.Username
	}
	body := fmt.Sprintf("user %s\nlistener %s %s\nallow_anonymous true\npersistence true\npersistence_location %s/\nautosave_interval 1\nmax_queued_messages 100000\nlog_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n", who, port, host, dir)
	if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "mosquitto.log")
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(MosquittoBin, "-c", conf)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, err
	}
	lf.Close()
	m := &Mosquitto{Addr: addr, Cmd: cmd, Log: logPath}
	if err := WaitListening(addr, 10*time.Second); err != nil {
		m.Kill()
		b, _ := os.ReadFile(logPath)
		return nil, fmt.Errorf("mosquitto did not start: %w\n%s", err, b)
	}
	return m, nil
}

// Kill stops mosquitto with SIGKILL and reaps it.
func (m *Mosquitto) Kill() {
	if m.Cmd.Process != nil {
		_ = m.Cmd.Process.Kill()
		_ = m.Cmd.Wait()
	}
}

// Stop stops mosquitto with SIGTERM (it saves its persistence file) and reaps it.
func (m *Mosquitto) Stop() {
	if m.Cmd.Process != nil {
		_ = m.Cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = m.Cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = m.Cmd.Process.Kill()
			<-done
		}
	}
}

// WaitListening polls addr until a TCP connection succeeds.
func WaitListening(addr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// CloseMochi closes an embedded broker, waiting at most d. mochi's Close
// waits for every client connection handler; a client that connects in the
// instant between the disconnect sweep and the listener closing would hold
// it until that client goes away. The listener itself is closed either way.
// It reports whether Close returned in time.
func CloseMochi(s *mqtt.Server, d time.Duration) bool {
	done := make(chan struct{})
	go func() { _ = s.Close(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}
