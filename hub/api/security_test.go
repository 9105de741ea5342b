package api

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
)

// clientIPOf asks a real server on 127.0.0.1 which client IP the engine
// sees for a request carrying forwarded headers.
func clientIPOf(t *testing.T, s *Server, xff, realIP string) string {
	t.Helper()
	ts := httptest.NewServer(s.Engine)
	defer ts.Close()
	req, _ := http.NewRequest("GET", ts.URL+"/ip", nil)
	if xff != "" {
		req.Header.Set("X-Forwarded-For", xff)
	}
	if realIP != "" {
		req.Header.Set("X-Real-IP", realIP)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func ipServer() *Server {
	s := NewServer(nil, nil, nil)
	s.Engine.GET("/ip", func(c *gin.Context) { c.String(http.StatusOK, c.ClientIP()) })
	return s
}

// TestSecurityEngineTrustsNoProxyByDefault (issue 13): every component's
// c.ClientIP() (login limits, audit) is the connection's address unless a
// trusted proxy is configured; forwarded headers from anyone else count
// for nothing.
func TestSecurityEngineTrustsNoProxyByDefault(t *testing.T) {
	s := ipServer()
	if ip := clientIPOf(t, s, "203.0.113.9", "203.0.113.10"); ip != "127.0.0.1" {
		t.Fatalf("no trusted proxy: client IP %q, want the connection's 127.0.0.1", ip)
	}
}

func TestSetTrustedProxies(t *testing.T) {
	s := ipServer()
	if err := s.SetTrustedProxies([]string{"10.0.0.0/8", "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ xff, real, want string }{
		{"203.0.113.9", "", "203.0.113.9"},
		{"6.6.6.6, 203.0.113.9", "", "203.0.113.9"},           // the proxy appended the real client
		{"6.6.6.6, 203.0.113.9, 10.1.2.3", "", "203.0.113.9"}, // through two trusted proxies
		{"", "203.0.113.10", "203.0.113.10"},                  // X-Real-IP when there is no X-Forwarded-For
		{"", "", "127.0.0.1"},
	} {
		if ip := clientIPOf(t, s, tc.xff, tc.real); ip != tc.want {
			t.Errorf("X-Forwarded-For %q X-Real-IP %q: %q, want %q", tc.xff, tc.real, ip, tc.want)
		}
	}
	if err := s.SetTrustedProxies([]string{"10.0.0.0/33"}); err == nil {
		t.Fatal("a bad CIDR was accepted")
	}
	if ip := clientIPOf(t, s, "203.0.113.9", ""); ip != "127.0.0.1" {
		t.Fatalf("after a failed SetTrustedProxies the engine trusts %q", ip)
	}
	if err := s.SetTrustedProxies(nil); err != nil {
		t.Fatal(err)
	}
	if ip := clientIPOf(t, s, "203.0.113.9", ""); ip != "127.0.0.1" {
		t.Fatalf("trust reset: client IP %q", ip)
	}
}

func TestLockoutBackoff(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	must := func(d time.Duration, err error) time.Duration {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	l := NewLockout(LockoutConfig{FreeFailures: 3, Base: time.Minute, Max: 4 * time.Minute}, func() time.Time { return now })
	for i := 0; i < 2; i++ {
		if d := must(l.Fail(ctx, "u")); d != 0 {
			t.Fatalf("failure %d locked for %v", i+1, d)
		}
	}
	want := []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 4 * time.Minute}
	for i, w := range want {
		if d := must(l.Fail(ctx, "u")); d != w {
			t.Fatalf("lock %d: %v, want %v", i+1, d, w)
		}
		if left, locked, _ := l.Locked(ctx, "u"); !locked || left != w {
			t.Fatalf("lock %d: Locked = %v %v", i+1, left, locked)
		}
		if _, locked, _ := l.Locked(ctx, "other"); locked {
			t.Fatal("another key is locked")
		}
		now = now.Add(w)
		if _, locked, _ := l.Locked(ctx, "u"); locked {
			t.Fatalf("lock %d outlasts %v", i+1, w)
		}
	}
	if err := l.Reset(ctx, "u"); err != nil {
		t.Fatal(err)
	}
	if d := must(l.Fail(ctx, "u")); d != 0 {
		t.Fatalf("after Reset: locked for %v", d)
	}
	now = now.Add(5 * time.Minute) // a quiet period longer than Max forgives
	must(l.Fail(ctx, "u"))
	if d := must(l.Fail(ctx, "u")); d != 0 {
		t.Fatalf("old failures not forgiven: %v", d)
	}
	if err := (LockoutConfig{FreeFailures: 3, Base: time.Minute, Max: time.Second}).Validate("x.lockout"); err == nil {
		t.Fatal("max < base accepted")
	}
	if err := DefaultLockout().Validate("x"); err != nil {
		t.Fatal(err)
	}
}
