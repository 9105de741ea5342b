package match

import (
	"encoding/base64"
	"encoding/binary"
	"math"

	"github.com/diemdanh/diemdanh/models/errkind"
)

// DescriptorLen is the number of dimensions of a dlib-resnet-v1 descriptor.
const DescriptorLen = 128

// MaxDescriptorLen bounds any embedder's output (ONNX embedders give 512).
const MaxDescriptorLen = 1024

// Descriptor is a face embedding: 128 float32 values for dlib's ResNet,
// another length for other embedders. Descriptors of different lengths (or
// models) are never compared.
type Descriptor []float32

// SquaredL2 returns the squared Euclidean distance. go-face's
// ClassifyThreshold compares this squared value against its tolerance, so
// dlib's customary 0.6 threshold corresponds to 0.36 there. Everything in
// this project speaks real L2 (Distance) instead.
//
// Both descriptors must have the same length; a shorter b panics.
func SquaredL2(a, b Descriptor) float32 {
	b = b[:len(a)]
	var s float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		d0 := a[i] - b[i]
		d1 := a[i+1] - b[i+1]
		d2 := a[i+2] - b[i+2]
		d3 := a[i+3] - b[i+3]
		s += d0*d0 + d1*d1 + d2*d2 + d3*d3
	}
	for ; i < len(a); i++ {
		d := a[i] - b[i]
		s += d * d
	}
	return s
}

// Distance returns the real Euclidean (L2) distance, the unit of every
// threshold in this project's configs and events.
func Distance(a, b Descriptor) float64 { return math.Sqrt(float64(SquaredL2(a, b))) }

// MarshalBase64 encodes d as little-endian float32 values in standard
// base64, the encoding of go-face's idols.json and of our gallery files.
func (d Descriptor) MarshalBase64() string {
	return base64.StdEncoding.EncodeToString(d.Bytes())
}

// Bytes returns the little-endian float32 encoding of d (4 bytes a value).
func (d Descriptor) Bytes() []byte {
	b := make([]byte, 4*len(d))
	for i, v := range d {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

// DescriptorFromBytes decodes little-endian float32 values, rejecting
// empty, ragged or oversized input and non-finite values.
func DescriptorFromBytes(b []byte) (Descriptor, error) {
	if len(b) == 0 || len(b)%4 != 0 || len(b) > 4*MaxDescriptorLen {
		return nil, errkind.New(errkind.Invalid, "descriptor", nil, "want a multiple of 4 bytes up to %d, got %d", 4*MaxDescriptorLen, len(b))
	}
	d := make(Descriptor, len(b)/4)
	for i := range d {
		v := math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, errkind.New(errkind.Invalid, "descriptor", nil, "value %d is not finite", i)
		}
		d[i] = v
	}
	return d, nil
}

// ParseDescriptorBase64 is the inverse of MarshalBase64.
func ParseDescriptorBase64(s string) (Descriptor, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, errkind.New(errkind.Invalid, "descriptor", err, "bad base64")
	}
	return DescriptorFromBytes(b)
}
