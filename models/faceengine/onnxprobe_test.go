package faceengine

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diemdanh/diemdanh/models/conf"
)

// pb appends protobuf fields: varints for ints, length-delimited for
// []byte and string.
type pb []byte

func (b pb) varint(v uint64) pb {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func (b pb) int(field int, v uint64) pb { return b.varint(uint64(field << 3)).varint(v) }

func (b pb) bytes(field int, v []byte) pb {
	return append(b.varint(uint64(field<<3|2)).varint(uint64(len(v))), v...)
}

// tensorType is a TypeProto for a float tensor of the given shape.
func tensorType(dims ...uint64) []byte {
	var shape pb
	for _, d := range dims {
		shape = shape.bytes(1, pb(nil).int(1, d))
	}
	return pb(nil).bytes(1, pb(nil).int(1, 1).bytes(2, shape))
}

// tinyGraph is an ONNX model y = Flatten(x * w) on a 1×3×16×16 input,
// with w a 1×3×1×1 initializer of ONNX data type dtype (1 float, 10
// float16) and the multiplication done by op.
func tinyGraph(op string, dtype uint64) []byte {
	raw := make([]byte, 0, 12)
	for i := 0; i < 3; i++ {
		if dtype == 10 {
			raw = binary.LittleEndian.AppendUint16(raw, 0x3c00) // 1.0
		} else {
			raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(1))
		}
	}
	w := pb(nil).int(1, 1).int(1, 3).int(1, 1).int(1, 1).int(2, dtype).bytes(8, []byte("w")).bytes(9, raw)
	mul := pb(nil).bytes(1, []byte("x")).bytes(1, []byte("w")).bytes(2, []byte("m")).bytes(4, []byte(op))
	flat := pb(nil).bytes(1, []byte("m")).bytes(2, []byte("y")).bytes(4, []byte("Flatten"))
	in := pb(nil).bytes(1, []byte("x")).bytes(2, tensorType(1, 3, 16, 16))
	out := pb(nil).bytes(1, []byte("y")).bytes(2, tensorType(1, 768))
	graph := pb(nil).bytes(1, mul).bytes(1, flat).bytes(2, []byte("tiny")).bytes(5, w).bytes(11, in).bytes(12, out)
	return pb(nil).int(1, 7).bytes(7, graph).bytes(8, pb(nil).int(2, 11))
}

// TestCustomRefusesWhatOpenCVCannotImport: OpenCV 4.6 throws on a float16
// weight or an unknown layer, and gocv would let that abort the process;
// the probe turns both into a refusal naming the file, with OpenCV's
// reason, while the same graph with float32 weights loads and runs.
func TestCustomRefusesWhatOpenCVCannotImport(t *testing.T) {
	cases := []struct {
		name   string
		op     string
		dtype  uint64
		reason string // "" = accepted
	}{
		{"float32 Mul loads", "Mul", 1, ""},
		{"float16 weights", "Mul", 10, "FLOAT16"},
		{"unknown layer", "NoSuchLayer", 1, "NoSuchLayer"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw := tinyGraph(tc.op, tc.dtype)
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "tiny.onnx"), raw, 0o600); err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(raw)
			c := CustomModel{Name: "tiny", Version: "1", File: "tiny.onnx", SHA256: hex.EncodeToString(sum[:]),
				Input: []int{16, 16}, Layout: "NCHW", Mean: CustomMean{127}, Scale: 1,
				Align: CustomAlign{Template: "arcface112"}, Dim: 768}
			e, err := NewCustomEmbedder(dir, c, 1, "engine.custom")
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("refused a graph OpenCV runs: %v", err)
				}
				if e.Dim() != 768 {
					t.Fatalf("dim %d", e.Dim())
				}
				e.Close()
				return
			}
			if err == nil {
				e.Close()
				t.Fatal("accepted")
			}
			var fe *conf.FieldError
			if !errors.As(err, &fe) || fe.Field != "engine.custom.file" || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("got %v, want a FieldError on engine.custom.file naming %q", err, tc.reason)
			}
		})
	}
}
