package auth_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/diemdanh/diemdanh/hub/auth"
	"github.com/diemdanh/diemdanh/hub/store"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/text/unicode/norm"
)

// TestSecurityAccountNameIsNFC: an account's display name is stored
// trimmed and in Unicode NFC (roster.NormalizeText), like every name in
// the roster, whatever form the client sent.
func TestSecurityAccountNameIsNFC(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "hub.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	cfg := auth.DefaultConfig()
	cfg.BcryptCost = bcrypt.MinCost
	svc, err := auth.New(db, nil, cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	const name = "Cô Lê Thị Hường"
	if norm.NFD.String(name) == name {
		t.Fatal("test value has nothing to decompose")
	}
	a, _, err := svc.CreateAccount(ctx, "test", auth.NewAccount{Username: "huong", Role: auth.RoleAdmin, FullName: norm.NFD.String(name) + " "})
	if err != nil {
		t.Fatal(err)
	}
	if a.FullName != name {
		t.Errorf("returned %+q, want the composed %q", a.FullName, name)
	}
	as, err := svc.ListAccounts(ctx)
	if err != nil || len(as) != 1 || as[0].FullName != name {
		t.Fatalf("stored: %+v %v", as, err)
	}
}
