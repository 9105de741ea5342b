package web

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/consent"
	"github.com/diemdanh/diemdanh/hub/facetemplates"
)

// TestParentSeesGateTemplateScope: the parents' portal says, in
// Vietnamese and English, whether the consent in force allows keeping
// the child's gate captures as face templates: not without a consent,
// yes under a consent with the scope, not after a renewal without it.
func TestParentSeesGateTemplateScope(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tpl, err := facetemplates.Open(f.db, bytes.Repeat([]byte{5}, facetemplates.KeySize), nil, nil)
	must(t, err)
	reg := consent.New(f.db, tpl, audit.New(f.db, nil, nil), nil, nil)
	grant := func(gate bool) func() {
		return func() {
			_, err := reg.Record(ctx, "admin:test", consent.Grant{PupilID: pupilAn, GuardianName: "Nguyễn Thị Hoa", PupilConsented: true,
				ScopeFace: true, ScopeGateTemplates: &gate, DocumentRef: "DK-An"})
			must(t, err)
		}
	}
	vi := map[bool]string{true: "có thể được giữ làm mẫu khuôn mặt", false: "không được giữ làm mẫu khuôn mặt"}
	en := map[bool]string{true: "may be kept as face templates", false: "are not kept as face templates"}
	cases := []struct {
		name   string
		change func()
		want   bool
	}{
		{"no consent", func() {}, false},
		{"consent with the scope", grant(true), true},
		{"renewed without it", grant(false), false},
	}
	p := f.client(t)
	p.login("hoa")
	for _, c := range cases {
		c.change()
		for _, lang := range []struct {
			code string
			text map[bool]string
		}{{"vi", vi}, {"en", en}} {
			p.do("GET", "/lang/"+lang.code, nil, nil)
			resp, body := p.do("GET", "/parent", nil, nil)
			i := strings.Index(body, `id="gate-templates-`+pupilAn+`"`)
			if resp.StatusCode != 200 || i < 0 {
				t.Fatalf("%s (%s): status %d, no statement for the child", c.name, lang.code, resp.StatusCode)
			}
			line := body[i:min(len(body), i+400)]
			if !strings.Contains(line, lang.text[c.want]) || strings.Contains(line, lang.text[!c.want]) {
				t.Errorf("%s (%s): %q, want %q", c.name, lang.code, line, lang.text[c.want])
			}
		}
	}
}
