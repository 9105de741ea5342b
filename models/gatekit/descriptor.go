package gatekit

import (
	"encoding/base64"
	"encoding/binary"
	"math"
)

// DescriptorLen is the number of dimensions of a dlib-resnet-v1 descriptor.
const DescriptorLen = 128

// Descriptor is a face embedding. dlib's ResNet gives 128 float32 values;
// embedders with another size are truncated or padded by their adapter.
type Descriptor [DescriptorLen]float32

// SquaredL2 returns the squared Euclidean distance. go-face's
// ClassifyThreshold compares this squared value against its tolerance, so
// dlib's customary 0.6 threshold corresponds to 0.36 there. Everything in
// this project speaks real L2 (Distance) instead.
func SquaredL2(a, b *Descriptor) float32 {
	var s float32
	for i := 0; i < DescriptorLen; i += 4 {
		d0 := a[i] - b[i]
		d1 := a[i+1] - b[i+1]
		d2 := a[i+2] - b[i+2]
		d3 := a[i+3] - b[i+3]
		s += d0*d0 + d1*d1 + d2*d2 + d3*d3
	}
	return s
}

// Distance returns the real Euclidean (L2) distance, the unit of every
// threshold in this project's configs and events.
func Distance(a, b *Descriptor) float64 { return math.Sqrt(float64(SquaredL2(a, b))) }

// MarshalBase64 encodes d as 128 little-endian float32 values in standard
// base64, the encoding of go-face's idols.json and of our gallery files.
func (d *Descriptor) MarshalBase64() string {
	return base64.StdEncoding.EncodeToString(d.Bytes())
}

// Bytes returns the little-endian float32 encoding of d (512 bytes).
func (d *Descriptor) Bytes() []byte {
	b := make([]byte, 4*DescriptorLen)
	for i, v := range d {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

// DescriptorFromBytes decodes 512 little-endian bytes, rejecting wrong sizes
// and non-finite values.
func DescriptorFromBytes(b []byte) (Descriptor, error) {
	var d Descriptor
	if len(b) != 4*DescriptorLen {
		return d, errf(KindInvalid, "descriptor", nil, "want %d bytes, got %d", 4*DescriptorLen, len(b))
	}
	for i := range d {
		v := math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return d, errf(KindInvalid, "descriptor", nil, "value %d is not finite", i)
		}
		d[i] = v
	}
	return d, nil
}

// ParseDescriptorBase64 is the inverse of MarshalBase64.
func ParseDescriptorBase64(s string) (Descriptor, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return Descriptor{}, errf(KindInvalid, "descriptor", err, "bad base64")
	}
	return DescriptorFromBytes(b)
}
