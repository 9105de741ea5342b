package facereview_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/facereview"
	"github.com/diemdanh/diemdanh/models/match"
)

// descriptor is a 128-value descriptor drawn from seed.
func descriptor(seed uint64) match.Descriptor {
	r := rand.New(rand.NewPCG(seed, seed+1))
	d := make(match.Descriptor, match.DescriptorLen)
	for i := range d {
		d[i] = float32(r.NormFloat64() / 10)
	}
	return d
}

// TestDescriptorStoredAndAssigned: the descriptor a gate sends with its
// crop comes back from Descriptor and from Assign; a face without one says
// so (HasDescriptor false, nil descriptor) and is still assigned.
func TestDescriptorStoredAndAssigned(t *testing.T) {
	for _, tc := range []struct {
		name string
		desc match.Descriptor // nil: the gate sent none
	}{
		{"with a descriptor", descriptor(1)},
		{"of 512 values", make(match.Descriptor, 512)},
		{"without one", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			u := f.capture(t, f.gates[0], f.clock().Add(-time.Minute))
			if tc.desc != nil {
				u.Descriptor = tc.desc.Bytes()
			}
			id := f.ingest(t, u)
			got, err := f.st.Get(ctx, id)
			if err != nil || got.HasDescriptor != (tc.desc != nil) {
				t.Fatalf("has descriptor %v (%v), want %v", got.HasDescriptor, err, tc.desc != nil)
			}
			d, err := f.st.Descriptor(ctx, id)
			if err != nil || !slices.Equal(d, tc.desc) || (tc.desc == nil) != (d == nil) {
				t.Fatalf("descriptor %d values (%v), want %d", len(d), err, len(tc.desc))
			}
			a, err := f.st.Assign(ctx, id, f.pupils["thcs-a"][0], "teacher:lan")
			if err != nil || !a.New || !slices.Equal(a.Descriptor, tc.desc) || (tc.desc == nil) != (a.Descriptor == nil) {
				t.Fatalf("assignment: new %v, descriptor %d values (%v); want %d", a.New, len(a.Descriptor), err, len(tc.desc))
			}
			if a.HasDescriptor != (tc.desc != nil) || !bytes.Equal(a.Crop, u.FaceJPEG) {
				t.Fatalf("assignment: has descriptor %v, crop %d bytes", a.HasDescriptor, len(a.Crop))
			}
		})
	}
}

// TestDescriptorSealed: the descriptor is not in the database files in
// clear, opens only in its own row and column, and a descriptor column
// emptied by hand reads as none.
func TestDescriptorSealed(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	u1 := f.capture(t, f.gates[0], f.clock().Add(-time.Minute))
	u1.Descriptor = descriptor(2).Bytes()
	u2 := f.capture(t, f.gates[0], f.clock().Add(-2*time.Minute))
	u2.Descriptor = descriptor(3).Bytes()
	id1, id2 := f.ingest(t, u1), f.ingest(t, u2)
	var raw []byte
	for _, p := range []string{f.db.Path, f.db.Path + "-wal"} {
		b, err := os.ReadFile(p)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		raw = append(raw, b...)
	}
	for i := 0; i+32 <= len(u1.Descriptor); i += 32 {
		if bytes.Contains(raw, u1.Descriptor[i:i+32]) {
			t.Fatalf("bytes %d..%d of the descriptor are in the database files in clear", i, i+32)
		}
	}
	for _, tc := range []struct {
		name, sql string
		args      []any
		id        int64
		want      error // nil: reads as no descriptor
	}{
		{"moved to another row", `UPDATE unrecognised_faces SET descriptor = (SELECT descriptor FROM unrecognised_faces WHERE id = ?) WHERE id = ?`,
			[]any{id1, id2}, id2, facereview.ErrUnreadable},
		{"the crop's ciphertext in its place", `UPDATE unrecognised_faces SET descriptor = crop WHERE id = ?`,
			[]any{id1}, id1, facereview.ErrUnreadable},
		{"emptied", `UPDATE unrecognised_faces SET descriptor = NULL WHERE id = ?`, []any{id1}, id1, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := f.db.W.Exec(tc.sql, tc.args...); err != nil {
				t.Fatal(err)
			}
			d, err := f.st.Descriptor(ctx, tc.id)
			if tc.want == nil && (err != nil || d != nil) || tc.want != nil && (!errors.Is(err, tc.want) || d != nil) {
				t.Fatalf("got %d values, %v; want %v", len(d), err, tc.want)
			}
		})
	}
}
