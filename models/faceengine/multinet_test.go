package faceengine

import (
	"image"
	"os"
	"path/filepath"
	"testing"

	"github.com/diemdanh/diemdanh/models/benchutil"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/errkind"
	"gocv.io/x/gocv"
)

// TestYuNetDetectHoldsNoMemory runs YuNet as the gate does, alternating a
// frame and windows of several sizes (so the network is set up again on
// every call), and checks the C heap in use does not grow with the number
// of calls. gocv 0.31's Net.ForwardLayers leaked about 0.5 KB a call (the
// output names and the output array): 800 calls would add ~400 KB.
func TestYuNetDetectHoldsNoMemory(t *testing.T) {
	d := yunet(t)
	img := testImage(t, "pristin.jpg")
	var inputs []gocv.Mat
	for _, r := range []image.Rectangle{image.Rect(0, 0, 640, 360), image.Rect(100, 50, 300, 250),
		image.Rect(200, 80, 330, 190), image.Rect(10, 10, 170, 250)} {
		region := img.Region(r)
		inputs = append(inputs, region.Clone())
		region.Close()
	}
	defer func() {
		for _, m := range inputs {
			m.Close()
		}
	}()
	run := func(n int) {
		for i := 0; i < n; i++ {
			if _, err := d.Detect(inputs[i%len(inputs)]); err != nil {
				t.Fatal(err)
			}
		}
	}
	run(400) // every shape's first set-up, OpenCV's thread pool and buffers
	benchutil.TrimCHeap()
	before, _ := benchutil.CHeapMB()
	const calls = 800
	run(calls)
	benchutil.TrimCHeap()
	after, _ := benchutil.CHeapMB()
	perCall := (after - before) * (1 << 20) / calls
	t.Logf("C heap in use %.2f → %.2f MB over %d calls (%.0f bytes a call)", before, after, calls, perCall)
	if perCall > 64 {
		t.Errorf("C heap grows %.0f bytes a detection; want none", perCall)
	}
}

// TestMultiNetErrors: a file OpenCV cannot read and an output the graph
// does not have are errors, not a crash (OpenCV throws; gocv would not
// catch it).
func TestMultiNetErrors(t *testing.T) {
	if _, err := loadMultiNet([]byte("not an onnx graph"), []string{"out"}); errkind.Of(err) != errkind.ModelCorrupt {
		t.Errorf("garbage: %v", err)
	}
	if _, err := loadMultiNet(nil, []string{"out"}); errkind.Of(err) != errkind.ModelCorrupt {
		t.Errorf("empty: %v", err)
	}
	raw, err := os.ReadFile(filepath.Join(conf.TestModelsDir(), YuNet2023MarBQ.Name))
	if err != nil {
		t.Fatalf("%v (run `make models`)", err)
	}
	n, err := loadMultiNet(raw, []string{"cls_8", "no_such_output"})
	if err != nil {
		t.Fatal(err)
	}
	defer n.close()
	in := gocv.NewMatWithSize(64, 64, gocv.MatTypeCV8UC3)
	defer in.Close()
	if _, err := n.forward(in, 1<<16); err == nil {
		t.Error("an output the graph lacks: no error")
	}
	n2, err := loadMultiNet(raw, []string{"cls_8"})
	if err != nil {
		t.Fatal(err)
	}
	defer n2.close()
	if _, err := n2.forward(in, 8); err == nil {
		t.Error("a buffer smaller than the output: no error")
	}
	outs, err := n2.forward(in, 64)
	if err != nil || len(outs) != 1 || len(outs[0]) != 64 {
		t.Errorf("64×64 input: cls_8 has %v values (%v), want one output of 8×8", len(outs), err)
	}
}
