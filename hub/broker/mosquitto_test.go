package broker_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diemdanh/diemdanh/hub/broker"
	"github.com/diemdanh/diemdanh/hub/ingest/ingesttest"
	"github.com/diemdanh/diemdanh/hub/store"
)

func TestMosquittoACLMain(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "hub.db")
	db, err := store.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ingesttest.Seed(ctx, db, []string{"thcs-a"}, 2, 1); err != nil {
		t.Fatal(err)
	}
	db.W.Exec(`UPDATE gates SET active = 0 WHERE id = 'gate2'`)
	db.Close()
	var out bytes.Buffer
	if err := broker.MosquittoACLMain(ctx, []string{"--db", path}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	acl := out.String()
	for _, want := range []string{
		"user diemdanh-hub\ntopic read diemdanh/v1/+/gate/+/+\ntopic write diemdanh/v1/+/gallery\n",
		"user thcs-a.gate1\ntopic write diemdanh/v1/thcs-a/gate/gate1/events\ntopic write diemdanh/v1/thcs-a/gate/gate1/status\n" +
			"topic write diemdanh/v1/thcs-a/gate/gate1/heartbeat\ntopic write diemdanh/v1/thcs-a/gate/gate1/unrecognised\n" +
			"topic read diemdanh/v1/thcs-a/gallery\n",
	} {
		if !strings.Contains(acl, want) {
			t.Fatalf("ACL lacks\n%s\ngot:\n%s", want, acl)
		}
	}
	if strings.Contains(acl, "gate2") {
		t.Fatal("inactive gate in the ACL")
	}
	outFile := filepath.Join(t.TempDir(), "acl")
	if err := broker.MosquittoACLMain(ctx, []string{"--db", path, "--out", outFile}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(outFile); string(b) != acl {
		t.Fatal("--out differs from stdout")
	}
	if err := broker.MosquittoACLMain(ctx, []string{"--db", "/nonexistent/hub.db"}, io.Discard, io.Discard); err == nil {
		t.Fatal("missing database accepted")
	}
	if _, err := broker.RenderMosquittoACL("hub", []broker.Gate{{School: "a", ID: "g", Username: "bad user"}}); err == nil {
		t.Fatal("username with a space accepted")
	}
}
