package app

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/auth"
)

// The wired hub gives the school set-up pages the same stores as the API:
// a pupil's page lists the pupil's templates (here: none yet) instead of
// saying the template store is unavailable.
func TestSchoolPagesWired(t *testing.T) {
	const pupil = "079123456789"
	a, _, pw := startWiredHub(t, `INSERT INTO classes(id, school_id, name, grade) VALUES ('c1', 's1', '1A', 1)`,
		`INSERT INTO pupils(id, school_id, class_id, full_name) VALUES ('`+pupil+`', 's1', 'c1', 'Nguyễn Văn An')`)
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	b, _ := json.Marshal(map[string]string{"username": "quantri", "password": pw})
	resp, err := hc.Post(a.BaseURL()+"/api/v1/auth/login", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("login: HTTP %d", resp.StatusCode)
	}
	resp, err = hc.Get(a.BaseURL() + "/admin/school/s1/pupils/" + pupil)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("pupil page: HTTP %d\n%s", resp.StatusCode, page)
	}
	for _, want := range []string{"Nguyễn Văn An", "Chưa đăng ký khuôn mặt."} {
		if !strings.Contains(string(page), want) {
			t.Errorf("pupil page lacks %q", want)
		}
	}
	if strings.Contains(string(page), "không khả dụng") {
		t.Error("pupil page says the template store is unavailable")
	}
}

// startWiredHub runs the whole hub (New, Run) on a test config with school
// s1, the given seed statements and an admin of s1, "quantri"; it returns
// once the hub serves, with the context it runs under and the admin's
// password. Cleanup stops it.
func startWiredHub(t *testing.T, seed ...string) (*App, context.Context, string) {
	t.Helper()
	cfg := testConfig(t)
	cfg.Web.CookieSecure = false
	ctx, cancel := context.WithCancel(context.Background())
	a, err := New(ctx, cfg, nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	for _, q := range append([]string{`INSERT INTO schools(id, name) VALUES ('s1', 'Trường Tiểu học Kim Đồng')`}, seed...) {
		if _, err := a.DB.W.Exec(q); err != nil {
			cancel()
			t.Fatalf("%s: %v", q, err)
		}
	}
	const pw = "mat-khau-12345"
	if _, _, err := a.Mods.Auth.CreateAccount(ctx, "test", auth.NewAccount{Username: "quantri", Password: pw,
		Role: auth.RoleAdmin, SchoolID: "s1", FullName: "Quản trị"}); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("shutdown hung")
		}
	})
	waitServing(t, a.BaseURL())
	return a, ctx, pw
}

func waitServing(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("hub not serving: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
