package web

import (
	"context"
	"testing"

	"github.com/diemdanh/diemdanh/hub/store"
)

// Test hooks for the external test package (web_test), which may import
// packages that import hub/web (hub/enrol).

type TestFixture struct{ f *fixture }

func NewTestFixture(t *testing.T, mut func(*Deps)) *TestFixture {
	return &TestFixture{newFixtureOpts(t, true, mut)}
}
func (x *TestFixture) DB() *store.DB { return x.f.db }
func (x *TestFixture) URL() string   { return x.f.ts.URL }
func Browser(t *testing.T) context.Context {
	return browser(t)
}
func BrowserLogin(t *testing.T, ctx context.Context, base, user string) {
	browserLogin(t, ctx, base, user)
}
func Screenshot(t *testing.T, ctx context.Context, name string) string {
	return screenshot(t, ctx, name)
}
func JS(t *testing.T, ctx context.Context, js string) string { return attr(t, ctx, js) }

const PupilAn = pupilAn
