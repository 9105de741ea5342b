package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/match"
)

// goldenStatuses, goldenHeartbeats and goldenAnnounces are the documented
// example payloads of the gate messages other than events
// (models/wire/PROTOCOL.md).
func goldenStatuses() map[string]*Status {
	return map[string]*Status{
		"online.json": {Schema: SchemaVersion, GateID: "gate-1", Online: true, At: 1788400512345},
		// The last will: registered at connect, before any clock reading.
		"will.json": {Schema: SchemaVersion, GateID: "gate-1", Online: false},
	}
}

func goldenHeartbeats() map[string]*Heartbeat {
	hb := &Heartbeat{Schema: SchemaVersion, GateID: "gate-1", At: 1788400512345, FPS: 12.5, Dropped: 3,
		OutboxDepth: 0, GalleryVer: 42, Unknowns: 1, UptimeS: 86400, CameraOnline: true}
	cand := *hb
	cand.CandidateWindow, cand.Candidates = match.SessionMorning, 412
	full := *hb
	full.OutboxDepth, full.DiskFull, full.OutboxRefused = 17, true, 3
	return map[string]*Heartbeat{"heartbeat.json": hb, "candidates.json": &cand, "disk_full.json": &full}
}

func goldenAnnounces() map[string]*GalleryAnnounce {
	return map[string]*GalleryAnnounce{
		"announce.json": {Schema: SchemaVersion, Version: 42, URL: "/api/v1/gates/{gate_id}/gallery",
			Model: match.ModelID{Name: "sface-2021dec-bq", Version: "2021dec-bq.yunet5.flip.3"}},
		// The version is what a gate acts on; URL and model may be empty.
		"version_only.json": {Schema: SchemaVersion, Version: 43},
	}
}

// checkGolden: each valid example decodes, and encoding it again gives
// exactly the example (compacted); with -update the examples are written
// from golden first.
func checkGolden[T any](t *testing.T, dir string, golden map[string]*T, decode func([]byte) (*T, error)) {
	t.Helper()
	if *update {
		for name, v := range golden {
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			var pretty bytes.Buffer
			_ = json.Indent(&pretty, b, "", "  ")
			pretty.WriteByte('\n')
			if err := os.WriteFile(filepath.Join(dir, name), pretty.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	files := readJSONFiles(t, dir)
	if len(files) != len(golden) {
		t.Fatalf("%s: %d golden payloads, want %d (run with -update)", dir, len(files), len(golden))
	}
	for name, b := range files {
		v, err := decode(b)
		if err != nil {
			t.Fatalf("%s/%s: %v", dir, name, err)
		}
		if want, ok := golden[name]; !ok || !reflect.DeepEqual(v, want) {
			t.Errorf("%s/%s decodes to %+v, want %+v", dir, name, v, want)
		}
		enc, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, b); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(enc, compact.Bytes()) {
			t.Errorf("%s/%s: re-encoded payload differs:\n got %s\nwant %s", dir, name, enc, compact.Bytes())
		}
	}
}

// checkInvalid: every bad example is refused with an error naming the
// field listed in the folder's expect.json.
func checkInvalid[T any](t *testing.T, dir string, decode func([]byte) (*T, error)) {
	t.Helper()
	var expect map[string]string
	b, err := os.ReadFile(filepath.Join(dir, "expect.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &expect); err != nil {
		t.Fatal(err)
	}
	files := readJSONFiles(t, dir)
	if len(files) != len(expect) {
		t.Fatalf("%s: %d files but %d expectations", dir, len(files), len(expect))
	}
	for name, payload := range files {
		want, ok := expect[name]
		if !ok {
			t.Fatalf("%s/%s has no expectation", dir, name)
		}
		v, err := decode(payload)
		var fe *conf.FieldError
		if v != nil || !errors.As(err, &fe) || fe.Field != want {
			t.Errorf("%s/%s: got %v, want an error on %q", dir, name, err, want)
		}
	}
}

func TestGoldenStatus(t *testing.T) {
	checkGolden(t, filepath.Join("testdata", "status", "valid"), goldenStatuses(), DecodeStatus)
	checkInvalid(t, filepath.Join("testdata", "status", "invalid"), DecodeStatus)
}

func TestGoldenHeartbeat(t *testing.T) {
	checkGolden(t, filepath.Join("testdata", "heartbeat", "valid"), goldenHeartbeats(), DecodeHeartbeat)
	checkInvalid(t, filepath.Join("testdata", "heartbeat", "invalid"), DecodeHeartbeat)
}

func TestGoldenGalleryAnnounce(t *testing.T) {
	checkGolden(t, filepath.Join("testdata", "announce", "valid"), goldenAnnounces(), DecodeGalleryAnnounce)
	checkInvalid(t, filepath.Join("testdata", "announce", "invalid"), DecodeGalleryAnnounce)
}

// TestPayloadLimit: every MQTT payload has the one size limit,
// MaxPayloadBytes, checked before parsing.
func TestPayloadLimit(t *testing.T) {
	pad := func(obj string) []byte {
		// A valid object followed by enough spaces to pass the limit.
		return []byte(obj + strings.Repeat(" ", MaxPayloadBytes+1-len(obj)))
	}
	status, _ := json.Marshal(goldenStatuses()["online.json"])
	hb, _ := json.Marshal(goldenHeartbeats()["heartbeat.json"])
	ann, _ := json.Marshal(goldenAnnounces()["announce.json"])
	ev, _ := goldenEvents()["in.json"].Encode()
	decoders := map[string]struct {
		payload []byte
		decode  func([]byte) error
	}{
		"status":    {status, func(b []byte) error { _, err := DecodeStatus(b); return err }},
		"heartbeat": {hb, func(b []byte) error { _, err := DecodeHeartbeat(b); return err }},
		"announce":  {ann, func(b []byte) error { _, err := DecodeGalleryAnnounce(b); return err }},
		"event":     {ev, func(b []byte) error { _, err := DecodeEvent(b); return err }},
	}
	for name, d := range decoders {
		if err := d.decode(d.payload); err != nil {
			t.Fatalf("%s: valid payload refused: %v", name, err)
		}
		if err := d.decode(pad(string(d.payload))[:MaxPayloadBytes]); err != nil {
			t.Errorf("%s: payload of exactly MaxPayloadBytes refused: %v", name, err)
		}
		var fe *conf.FieldError
		if err := d.decode(pad(string(d.payload))); !errors.As(err, &fe) || fe.Field != "payload" {
			t.Errorf("%s: payload over MaxPayloadBytes: got %v, want an error on payload", name, err)
		}
	}
}
