package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"image"
	"image/jpeg"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/match"
)

var update = flag.Bool("update", false, "rewrite the golden payloads in testdata/")

// goldenEvents are the documented example payloads (models/wire/PROTOCOL.md).
func goldenEvents() map[string]*Event {
	base := func() *Event {
		return &Event{Schema: SchemaVersion, EventID: "01920e4a-7c3b-7d2e-9f10-3a5b7c9d1e2f", SchoolID: "thcs-nguyen-du",
			GateID: "gate-1", Direction: DirectionIn, StudentID: "079212003456", CapturedAt: 1788400512345,
			Distance: 0.312, Margin: 0.121, FramesUsed: 3,
			Quality: match.Quality{SizePx: 164, Sharpness: 212.5, YawDeg: -6.2, RollDeg: 1.4, Brightness: 118.3},
			Model:   match.DlibResNetV1, GalleryVer: 42}
	}
	in := base()
	out := base()
	out.EventID, out.Direction, out.CapturedAt = "01920f1c-2a4d-7e3f-8a21-4b6c8d0e2f3a", DirectionOut, 1788425112000
	unknown := base()
	unknown.EventID, unknown.StudentID, unknown.Distance, unknown.Margin = "01920e4b-0d1e-7a2b-8c3d-4e5f60718293", UnknownStudent, 0.55, 0.02
	crop := base()
	crop.EventID = "01920e4b-5f60-7182-9a3b-4c5d6e7f8091"
	crop.FaceJPEG = tinyJPEG()
	tmpl := base()
	tmpl.EventID, tmpl.FaceJPEG, tmpl.Model = "01920e4b-8a9b-7c0d-9e1f-2a3b4c5d6e7f", tinyJPEG(), match.DefaultEmbedder
	tmpl.Template = goldenTemplate()
	return map[string]*Event{"in.json": in, "out.json": out, "unknown.json": unknown, "with_crop.json": crop,
		"with_template.json": tmpl}
}

// goldenTemplate is a template offer whose numbers are exact in JSON.
func goldenTemplate() *EventTemplate {
	return &EventTemplate{Descriptor: goldenDescriptor().Bytes(), DistanceMargin: 0.25, SecondMargin: 0.1875, Agreeing: 4, Votes: 4}
}

func readJSONFiles(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".json") && e.Name() != "expect.json" {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			out[e.Name()] = b
		}
	}
	return out
}

// TestGoldenEvents: each valid example decodes, and encoding it again
// gives exactly the example (compacted): the examples are canonical.
func TestGoldenEvents(t *testing.T) {
	dir := filepath.Join("testdata", "events", "valid")
	if *update {
		for name, ev := range goldenEvents() {
			b, err := ev.Encode()
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
	if len(files) != len(goldenEvents()) {
		t.Fatalf("%d golden events, want %d (run with -update)", len(files), len(goldenEvents()))
	}
	for name, b := range files {
		ev, err := DecodeEvent(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		enc, err := ev.Encode()
		if err != nil {
			t.Fatalf("%s: encode: %v", name, err)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, b); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(enc, compact.Bytes()) {
			t.Errorf("%s: re-encoded payload differs:\n got %s\nwant %s", name, enc, compact.Bytes())
		}
	}
}

// TestInvalidEventPayloads: every bad example is refused with an error
// naming the field listed in testdata/events/invalid/expect.json.
func TestInvalidEventPayloads(t *testing.T) {
	dir := filepath.Join("testdata", "events", "invalid")
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
		t.Fatalf("%d files but %d expectations", len(files), len(expect))
	}
	for name, payload := range files {
		want, ok := expect[name]
		if !ok {
			t.Fatalf("%s has no expectation", name)
		}
		_, err := DecodeEvent(payload)
		var fe *conf.FieldError
		if !errors.As(err, &fe) || fe.Field != want {
			t.Errorf("%s: got %v, want an error on %q", name, err, want)
		}
	}
}

func TestEventValidateTable(t *testing.T) {
	valid := goldenEvents()["in.json"]
	cases := []struct {
		name, field string
		mod         func(*Event)
	}{
		{"valid", "", func(*Event) {}},
		{"unknown student", "", func(e *Event) { e.StudentID = UnknownStudent }},
		{"out", "", func(e *Event) { e.Direction = DirectionOut }},
		{"schema 2", "schema", func(e *Event) { e.Schema = 2 }},
		{"schema 0", "schema", func(e *Event) { e.Schema = 0 }},
		{"event id not uuid", "event_id", func(e *Event) { e.EventID = "abc" }},
		{"event id braces", "event_id", func(e *Event) { e.EventID = "{01920e4a-7c3b-7d2e-9f10-3a5b7c9d1e2f}" }},
		{"school upper", "school_id", func(e *Event) { e.SchoolID = "THCS" }},
		{"school topic wildcard", "school_id", func(e *Event) { e.SchoolID = "a/#" }},
		{"gate empty", "gate_id", func(e *Event) { e.GateID = "" }},
		{"gate plus", "gate_id", func(e *Event) { e.GateID = "+" }},
		{"direction", "direction", func(e *Event) { e.Direction = "IN" }},
		{"student 11 digits", "student_id", func(e *Event) { e.StudentID = "07921200345" }},
		{"student letters", "student_id", func(e *Event) { e.StudentID = "07921200345a" }},
		{"student empty", "student_id", func(e *Event) { e.StudentID = "" }},
		{"captured 2019", "captured_at", func(e *Event) { e.CapturedAt = 1546300800000 }},
		{"captured seconds not ms", "captured_at", func(e *Event) { e.CapturedAt = 1788400512 }},
		{"distance negative", "distance", func(e *Event) { e.Distance = -0.1 }},
		{"distance NaN", "distance", func(e *Event) { e.Distance = math.NaN() }},
		{"margin inf", "margin", func(e *Event) { e.Margin = math.Inf(1) }},
		{"frames used", "frames_used", func(e *Event) { e.FramesUsed = -1 }},
		{"model missing", "model", func(e *Event) { e.Model = match.ModelID{} }},
		{"crop not jpeg", "face_jpeg", func(e *Event) { e.FaceJPEG = []byte("PNG") }},
		{"crop truncated", "face_jpeg", func(e *Event) { e.FaceJPEG = tinyJPEG()[:200] }},
		{"crop without end marker", "face_jpeg", func(e *Event) { j := tinyJPEG(); e.FaceJPEG = j[:len(j)-2] }},
		{"crop too big", "face_jpeg", func(e *Event) { e.FaceJPEG = append([]byte{0xFF, 0xD8}, make([]byte, MaxCropBytes)...) }},
		{"sharpness NaN", "quality.sharpness", func(e *Event) { e.Quality.Sharpness = math.NaN() }},
		{"template", "", func(e *Event) { e.Template = goldenTemplate() }},
		{"template of 512 values", "", func(e *Event) {
			e.Template = goldenTemplate()
			e.Template.Descriptor = make(match.Descriptor, 512).Bytes()
		}},
		{"template, margins 0", "", func(e *Event) {
			e.Template = goldenTemplate()
			e.Template.DistanceMargin, e.Template.SecondMargin = 0, 0
		}},
		{"template on an unknown face", "template", func(e *Event) { e.StudentID, e.Template = UnknownStudent, goldenTemplate() }},
		{"template without descriptor", "template.descriptor", func(e *Event) {
			e.Template = goldenTemplate()
			e.Template.Descriptor = nil
		}},
		{"template descriptor NaN", "template.descriptor", func(e *Event) {
			e.Template = goldenTemplate()
			e.Template.Descriptor = descriptorBytes(3, float32(math.NaN()))
		}},
		{"template descriptor inf", "template.descriptor", func(e *Event) {
			e.Template = goldenTemplate()
			e.Template.Descriptor = descriptorBytes(127, float32(math.Inf(-1)))
		}},
		{"template descriptor ragged", "template.descriptor", func(e *Event) {
			e.Template = goldenTemplate()
			e.Template.Descriptor = e.Template.Descriptor[:510]
		}},
		{"template descriptor of 1", "template.descriptor", func(e *Event) {
			e.Template = goldenTemplate()
			e.Template.Descriptor = match.Descriptor{0.5}.Bytes()
		}},
		{"template descriptor too long", "template.descriptor", func(e *Event) {
			e.Template = goldenTemplate()
			e.Template.Descriptor = make(match.Descriptor, match.MaxDescriptorLen+1).Bytes()
		}},
		{"template distance margin negative", "template.distance_margin", func(e *Event) {
			e.Template = goldenTemplate()
			e.Template.DistanceMargin = -0.01
		}},
		{"template distance margin NaN", "template.distance_margin", func(e *Event) {
			e.Template = goldenTemplate()
			e.Template.DistanceMargin = math.NaN()
		}},
		{"template second margin inf", "template.second_margin", func(e *Event) {
			e.Template = goldenTemplate()
			e.Template.SecondMargin = math.Inf(1)
		}},
		{"template votes 0", "template.votes", func(e *Event) {
			e.Template = goldenTemplate()
			e.Template.Votes, e.Template.Agreeing = 0, 0
		}},
		{"template agreeing over votes", "template.agreeing", func(e *Event) {
			e.Template = goldenTemplate()
			e.Template.Agreeing = 5
		}},
		{"template agreeing 0", "template.agreeing", func(e *Event) {
			e.Template = goldenTemplate()
			e.Template.Agreeing = 0
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := *valid
			tc.mod(&e)
			err := e.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("valid event refused: %v", err)
				}
				if _, err := e.Encode(); err != nil {
					t.Fatal(err)
				}
				return
			}
			var fe *conf.FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("got %v, want error on %q", err, tc.field)
			}
			if _, err := e.Encode(); err == nil {
				t.Fatal("Encode accepted an invalid event")
			}
		})
	}
}

func TestDecodeEventTable(t *testing.T) {
	good, _ := goldenEvents()["in.json"].Encode()
	cases := []struct {
		name    string
		payload []byte
		field   string
	}{
		{"good", good, ""},
		{"empty", nil, "payload"},
		{"not json", []byte("hello"), "payload"},
		{"array", []byte("[]"), "payload"},
		{"null", []byte("null"), "schema"},
		{"truncated", good[:len(good)/2], "payload"},
		{"trailing object", append(append([]byte(nil), good...), []byte(`{}`)...), "payload"},
		{"unknown field", bytes.Replace(good, []byte(`{"schema"`), []byte(`{"extra":1,"schema"`), 1), "payload"},
		{"schema as string", bytes.Replace(good, []byte(`"schema":1`), []byte(`"schema":"1"`), 1), "payload"},
		{"crop not base64", bytes.Replace(good, []byte(`"gallery_version":42`), []byte(`"gallery_version":42,"face_jpeg":"!!"`), 1), "payload"},
		{"oversize", append(good, bytes.Repeat([]byte(" "), MaxPayloadBytes)...), "payload"},
	}
	for _, tc := range cases {
		_, err := DecodeEvent(tc.payload)
		if tc.field == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		var fe *conf.FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%s: got %v, want error on %q", tc.name, err, tc.field)
		}
	}
}

func axis(i int, v float32) match.Descriptor {
	d := make(match.Descriptor, match.DescriptorLen)
	d[i] = v
	return d
}

func goldenGallery(t testing.TB) *GalleryDoc {
	g := match.NewGallery(7, match.DlibResNetV1)
	for _, p := range []struct {
		id string
		d  match.Descriptor
	}{{"079212003456", axis(0, 0.5)}, {"079212003456", axis(1, 0.5)}, {"001308009911", axis(2, 0.5)}} {
		if err := g.Add(p.id, p.d); err != nil {
			t.Fatal(err)
		}
	}
	doc := DocFromGallery("thcs-nguyen-du", g)
	doc.Threshold, doc.MinMargin = 0.42, 0.06
	return doc
}

func TestGoldenGallery(t *testing.T) {
	dir := filepath.Join("testdata", "gallery")
	if *update {
		b, _ := json.MarshalIndent(goldenGallery(t), "", "  ")
		if err := os.WriteFile(filepath.Join(dir, "valid.json"), append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "valid.json"))
	if err != nil {
		t.Fatal(err)
	}
	doc, g, err := DecodeGallery(b)
	if err != nil {
		t.Fatal(err)
	}
	if doc.Version != 7 || g.People() != 2 || g.Len() != 3 || doc.Threshold != 0.42 {
		t.Fatalf("decoded v%d %d people %d descriptors", doc.Version, g.People(), g.Len())
	}
	var expect map[string]string
	eb, err := os.ReadFile(filepath.Join(dir, "invalid", "expect.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(eb, &expect); err != nil {
		t.Fatal(err)
	}
	files := readJSONFiles(t, filepath.Join(dir, "invalid"))
	if len(files) != len(expect) {
		t.Fatalf("%d files but %d expectations", len(files), len(expect))
	}
	for name, payload := range files {
		_, _, err := DecodeGallery(payload)
		var fe *conf.FieldError
		if !errors.As(err, &fe) || fe.Field != expect[name] {
			t.Errorf("%s: got %v, want error on %q", name, err, expect[name])
		}
	}
}

// tinyJPEG is a complete 8×8 JPEG (Go's encoder is deterministic).
func tinyJPEG() []byte {
	im := image.NewGray(image.Rect(0, 0, 8, 8))
	for i := range im.Pix {
		im.Pix[i] = uint8(i * 4)
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, im, &jpeg.Options{Quality: 50}); err != nil {
		panic(err)
	}
	return b.Bytes()
}
