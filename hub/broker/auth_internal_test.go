package broker

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/diemdanh/diemdanh/hub/store"
)

func TestAuthenticatorForgivesOldFailures(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "hub.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	h, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	db.W.Exec(`INSERT INTO schools(id, name) VALUES ('s', 'S')`)
	if _, err := db.W.Exec(`INSERT INTO gates(id, school_id, username, password_hash) VALUES ('g', 's', 'u', ?)`, string(h)); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := NewAuthenticator(db, LockoutConfig{FreeFailures: 3, Base: 10 * time.Second, Max: time.Minute}, func() time.Time { return now })
	for i := 0; i < 3; i++ {
		if _, err := a.Check(ctx, "u", "bad", "1.2.3.4:5"); err != ErrBadCredentials {
			t.Fatalf("%d: %v", i, err)
		}
	}
	now = now.Add(2 * time.Minute)
	for i := 0; i < 3; i++ {
		if _, err := a.Check(ctx, "u", "bad", "1.2.3.4:5"); err != ErrBadCredentials {
			t.Fatalf("after quiet period %d: %v", i, err)
		}
	}
	if _, err := a.Check(ctx, "u", "pw", "1.2.3.4:5"); err != nil {
		t.Fatal(err)
	}
}
