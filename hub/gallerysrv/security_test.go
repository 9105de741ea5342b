package gallerysrv

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/facetemplates"
	"github.com/diemdanh/diemdanh/hub/roster"
	"github.com/diemdanh/diemdanh/hub/store"
	"golang.org/x/crypto/bcrypt"
)

type secClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *secClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *secClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// TestSecurityGalleryGateLockout (issue 13): the gallery endpoint's own
// basic-auth check locks a gate username after wrong passwords from many
// addresses — also for the right, cached password — with exponential
// backoff; another gate is unaffected and a good login resets the count.
func TestSecurityGalleryGateLockout(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "hub.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	clk := &secClock{t: time.Date(2026, 11, 20, 7, 0, 0, 0, time.UTC)}
	rs := roster.New(db, nil, clk.Now)
	rs.BcryptCost = bcrypt.MinCost
	key := make([]byte, facetemplates.KeySize)
	rand.Read(key)
	tpl, err := facetemplates.Open(db, key, nil, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rs.PutSchool(ctx, roster.School{ID: "thcs-a", Name: "A"}); err != nil {
		t.Fatal(err)
	}
	ga, err := rs.CreateGate(ctx, roster.Gate{ID: "gate-a", SchoolID: "thcs-a"})
	if err != nil {
		t.Fatal(err)
	}
	gb, err := rs.CreateGate(ctx, roster.Gate{ID: "gate-b", SchoolID: "thcs-a"})
	if err != nil {
		t.Fatal(err)
	}
	srv := New(db, tpl, nil, Default(), nil, clk.Now)
	a := api.NewServer(nil, clk.Now, nil)
	srv.Routes(a.V1)
	get := func(gate string, c roster.GateCredentials, pw string, from int) int {
		req := httptest.NewRequest("GET", "/api/v1/gates/"+gate+"/gallery", nil)
		req.RemoteAddr = fmt.Sprintf("10.1.%d.1:50000", from)
		req.SetBasicAuth(c.Username, pw)
		rec := httptest.NewRecorder()
		a.Engine.ServeHTTP(rec, req)
		return rec.Code
	}
	expect := func(step string, got, want int) {
		t.Helper()
		if got != want {
			t.Fatalf("%s: status %d, want %d", step, got, want)
		}
	}
	lc := api.DefaultLockout()
	expect("gate fetches its gallery", get("gate-a", ga, ga.Password, 0), http.StatusOK)
	for i := 1; i <= lc.FreeFailures; i++ {
		expect("wrong password", get("gate-a", ga, "guess", i), http.StatusUnauthorized)
	}
	expect("right password while locked", get("gate-a", ga, ga.Password, 90), http.StatusTooManyRequests)
	expect("another gate", get("gate-b", gb, gb.Password, 91), http.StatusOK)
	clk.Add(lc.Base + time.Second)
	expect("wrong password after the lock", get("gate-a", ga, "guess", 92), http.StatusUnauthorized)
	clk.Add(lc.Base + time.Second)
	expect("right password in the doubled lock", get("gate-a", ga, ga.Password, 93), http.StatusTooManyRequests)
	clk.Add(lc.Base)
	expect("right password after it", get("gate-a", ga, ga.Password, 94), http.StatusOK)
	for i := 1; i < lc.FreeFailures; i++ {
		expect("wrong password after a good login", get("gate-a", ga, "guess", 100+i), http.StatusUnauthorized)
	}
	expect("good login reset the count", get("gate-a", ga, ga.Password, 110), http.StatusOK)
}
