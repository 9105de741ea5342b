package archcheck

import (
	"bytes"
	"encoding/json"
	"io"
	"os/exec"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/diemdanh/diemdanh"

// The cgo face code: OpenCV through gocv and dlib through go-face. Only
// the packages that decode images or compute descriptors may link it
// (models/faceengine and what wires it into a binary).
const (
	gocv   = "gocv.io/x/gocv"
	goFace = "github.com/Kagami/go-face"
)

// checked are the patterns whose packages must link neither gocv nor
// go-face, unless exempt below. New packages under hub/ are checked
// without being listed.
var checked = []string{
	"./models/conf", "./models/errkind", "./models/procstat", "./models/imagecheck",
	"./models/match", "./models/wire",
	"./hub/...",
	"./edge/publish/...", "./edge/store", "./edge/gallery", "./edge/capture",
}

// exempt: packages among checked that may link the engine, and why.
var exempt = map[string]string{
	module + "/hub":                 "the hub binary: links hub/app",
	module + "/hub/app":             "wires every module, hub/enrol among them",
	module + "/hub/enrol":           "decodes enrolment photos and computes their descriptors",
	module + "/hub/bench/enrol":     "bench-enrol: measures hub/enrol's real pipeline",
	module + "/hub/bench/gatelearn": "edge bench --learn: hub/enrol's \"not this pupil\" re-describes event crops; the teacher describes the photos walked",
}

// cameraOnly: packages that may link gocv (to open cameras and video
// files) but not go-face.
var cameraOnly = map[string]string{
	module + "/edge/capture": "opens cameras and video files with OpenCV (Frame carries a gocv.Mat)",
}

type pkg struct {
	ImportPath string
	Imports    []string
	DepOnly    bool
	Error      *struct{ Err string }
}

// TestNoFaceEngineOutsideItsUsers runs `go list -deps -json` on the checked
// packages and fails for each one whose non-test dependencies include
// gocv or go-face, naming the import chain that brings it in. Test-only
// imports do not count: they are not linked into the binaries.
func TestNoFaceEngineOutsideItsUsers(t *testing.T) {
	cmd := exec.Command("go", append([]string{"list", "-deps", "-json"}, checked...)...)
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	graph := map[string][]string{}
	var roots []string
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if p.Error != nil {
			t.Fatalf("%s: %s", p.ImportPath, p.Error.Err)
		}
		graph[p.ImportPath] = p.Imports
		if !p.DepOnly {
			roots = append(roots, p.ImportPath)
		}
	}
	sort.Strings(roots)
	if len(roots) < 20 {
		t.Fatalf("only %d packages matched %v", len(roots), checked)
	}
	for _, root := range roots {
		forbidden := []string{gocv, goFace}
		if _, ok := exempt[root]; ok {
			forbidden = nil
		} else if _, ok := cameraOnly[root]; ok {
			forbidden = []string{goFace}
		}
		for _, f := range forbidden {
			if chain := importChain(graph, root, f); chain != nil {
				t.Errorf("%s links %s: %s", short(root), f, strings.Join(shortAll(chain), " → "))
			}
		}
	}
	// The exemptions stay honest: an exempt package that no longer links
	// the engine comes off the list.
	for p, why := range exempt {
		if _, ok := graph[p]; !ok {
			t.Errorf("exempt package %s (%s) not found", short(p), why)
		} else if importChain(graph, p, gocv) == nil && importChain(graph, p, goFace) == nil {
			t.Errorf("%s no longer links the face engine: remove it from exempt", short(p))
		}
	}
	for p := range cameraOnly {
		if _, ok := graph[p]; ok && importChain(graph, p, gocv) == nil {
			t.Errorf("%s no longer links gocv: remove it from cameraOnly", short(p))
		}
	}
}

// harnesses are the test harnesses: packages that exist for tests and
// benchmarks (starting PostgreSQL, seeding a hub, a broker to publish to).
var harnesses = []string{
	module + "/deploy/citydb/pgtest",
	module + "/hub/ingest/ingesttest",
	module + "/edge/publish/brokertest",
}

// harnessUsers may depend on a harness: the bench commands, the harnesses
// themselves, and the binaries' wiring of the bench commands (hub/app and
// edge/app register them, so the binaries link them). Everything else is
// production code and must not, not even indirectly.
func harnessUser(p string) bool {
	for _, h := range harnesses {
		if p == h {
			return true
		}
	}
	switch p {
	case module + "/hub", module + "/hub/app", module + "/edge", module + "/edge/app", module + "/edge/bench":
		return true
	}
	return strings.HasPrefix(p, module+"/hub/bench/")
}

// TestNoHarnessInProduction fails for each package of the module, outside
// the bench commands and their wiring, whose non-test dependencies include
// a test harness (deploy/citydb/pgtest, hub/ingest/ingesttest,
// edge/publish/brokertest), naming the import chain. Test files may use
// them: test-only imports are not linked.
func TestNoHarnessInProduction(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "-json", "./...")
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	graph := map[string][]string{}
	var roots []string
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		graph[p.ImportPath] = p.Imports
		if !p.DepOnly {
			roots = append(roots, p.ImportPath)
		}
	}
	sort.Strings(roots)
	for _, h := range harnesses {
		if _, ok := graph[h]; !ok {
			t.Errorf("harness %s not found: update harnesses", short(h))
		}
	}
	for _, want := range []string{"/hub/broker", "/hub/web", "/hub/citysync", "/hub/enrol"} {
		if _, ok := graph[module+want]; !ok {
			t.Fatalf("%s not listed", want)
		}
	}
	for _, root := range roots {
		if harnessUser(root) {
			continue
		}
		for _, h := range harnesses {
			if chain := importChain(graph, root, h); chain != nil {
				t.Errorf("%s links the test harness %s: %s (move the code using it under hub/bench/ or into a _test.go file)",
					short(root), short(h), strings.Join(shortAll(chain), " → "))
			}
		}
	}
}

// importChain returns the shortest import path from root to target (both
// included), or nil when root does not depend on target.
func importChain(graph map[string][]string, root, target string) []string {
	prev := map[string]string{root: ""}
	queue := []string{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if p == target {
			var chain []string
			for ; p != ""; p = prev[p] {
				chain = append([]string{p}, chain...)
			}
			return chain
		}
		for _, q := range graph[p] {
			if _, seen := prev[q]; !seen {
				prev[q] = p
				queue = append(queue, q)
			}
		}
	}
	return nil
}

func short(p string) string { return strings.TrimPrefix(p, module+"/") }

func shortAll(ps []string) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = short(p)
	}
	return out
}
