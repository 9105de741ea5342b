package web

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/notify"
)

func breachForm(c *client, what string, found time.Time) url.Values {
	return url.Values{"csrf_token": {c.csrf}, "what": {what}, "found_at": {found.In(notify.Zone("")).Format(breachTimeLayout)},
		"scope": {"pupils"}, "subjects": {"1A"}, "affected_count": {"3"}, "actions": {"Đổi mật khẩu quản trị"}}
}

// TestBreachRegisterAndClock: an admin records breaches on /admin/breaches;
// the overview shows the 72-hour clock of each open breach not yet
// notified (time left, or overdue in red), the authority's notification
// stops it, and every change is audited.
func TestBreachRegisterAndClock(t *testing.T) {
	f := newFixture(t)
	a := f.client(t)
	a.login("admin")
	if _, body := a.do("GET", "/admin", nil, nil); !strings.Contains(body, `id="breach-none"`) {
		t.Fatal("the overview does not say that no breach waits")
	}
	now := time.Now()
	steps := []struct {
		what  string
		found time.Time
	}{{"Lộ danh sách lớp 1A qua thư điện tử", now.Add(-10*time.Hour - 2*time.Minute)}, {"Mất máy tính xách tay", now.Add(-80 * time.Hour)}}
	for _, s := range steps {
		resp, body := a.do("POST", "/admin/breaches", breachForm(a, s.what, s.found), nil)
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("create: %d %s", resp.StatusCode, body)
		}
	}
	_, body := a.do("GET", "/admin", nil, nil)
	for _, want := range []string{"Lộ danh sách lớp 1A", "Còn 61 giờ", "Mất máy tính xách tay", `bad overdue clock">Quá hạn 8 giờ`} {
		if !strings.Contains(body, want) {
			t.Errorf("the overview lacks %q", want)
		}
	}
	var first, second int64
	must(t, f.db.R.QueryRow(`SELECT id FROM breaches WHERE what LIKE 'Lộ%'`).Scan(&first))
	must(t, f.db.R.QueryRow(`SELECT id FROM breaches WHERE what LIKE 'Mất%'`).Scan(&second))
	at := now.In(notify.Zone("")).Format(breachTimeLayout)
	posts := []struct {
		path string
		form url.Values
	}{
		{"/admin/breaches/" + itoa(first) + "/action", url.Values{"action": {"Thu hồi thư"}}},
		{"/admin/breaches/" + itoa(first) + "/notify-authority", url.Values{"authority": {"A05 – Bộ Công an"}, "at": {at}}},
		{"/admin/breaches/" + itoa(first) + "/notify-subjects", url.Values{"at": {at}}},
		{"/admin/breaches/" + itoa(second) + "/close", url.Values{}},
	}
	for _, p := range posts {
		p.form.Set("csrf_token", a.csrf)
		if resp, body := a.do("POST", p.path, p.form, nil); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("%s: %d %s", p.path, resp.StatusCode, body)
		}
	}
	if _, body := a.do("GET", "/admin", nil, nil); !strings.Contains(body, `id="breach-none"`) || strings.Contains(body, "Quá hạn") {
		t.Error("a notified and a closed breach still show a clock on the overview")
	}
	_, body = a.do("GET", "/admin/breaches", nil, nil)
	for _, want := range []string{"Thu hồi thư", "A05 – Bộ Công an", "Đã đóng", at} {
		if !strings.Contains(body, want) {
			t.Errorf("the register lacks %q", want)
		}
	}
	var n int
	must(t, f.db.R.QueryRow(`SELECT COUNT(*) FROM audit_log WHERE action LIKE 'breach_%' AND actor = 'admin:admin'`).Scan(&n))
	if n != 6 {
		t.Errorf("%d breach audit entries, want 6 (2 created, action, authority, subjects, close)", n)
	}
	// A wrong time is refused, nothing changes.
	form := breachForm(a, "x", now)
	form.Set("found_at", "2026-12-06 07:00")
	if resp, _ := a.do("POST", "/admin/breaches", form, nil); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a time not in dd/mm/yyyy HH:MM: %d, want 400", resp.StatusCode)
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestBreachRoleRouteRefusals: teachers, parents and gates reach none of the
// register's routes, with or without hub/auth in front, and change nothing.
func TestBreachRoleRouteRefusals(t *testing.T) {
	for _, mw := range []bool{true, false} {
		t.Run(map[bool]string{true: "with-auth-middleware", false: "web-checks-alone"}[mw], func(t *testing.T) {
			f := newFixtureMW(t, mw)
			adm := f.client(t)
			adm.login("admin")
			adm.do("POST", "/admin/breaches", breachForm(adm, "Sự cố thử", time.Now()), nil)
			gate := map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("g1:"+gatePass))}
			gateGet, gatePost := http.StatusForbidden, http.StatusForbidden
			if !mw {
				gateGet, gatePost = http.StatusSeeOther, http.StatusUnauthorized
			}
			routes := []struct {
				method, path string
				form         url.Values
			}{
				{"GET", "/admin/breaches", nil},
				{"POST", "/admin/breaches", url.Values{"what": {"x"}, "found_at": {"06/12/2026 07:00"}, "scope": {"all"}}},
				{"POST", "/admin/breaches/1/action", url.Values{"action": {"x"}}},
				{"POST", "/admin/breaches/1/notify-authority", url.Values{"authority": {"x"}, "at": {"06/12/2026 07:00"}}},
				{"POST", "/admin/breaches/1/notify-subjects", url.Values{"at": {"06/12/2026 07:00"}}},
				{"POST", "/admin/breaches/1/close", url.Values{}},
			}
			for _, who := range []string{"lan", "hoa", "gate"} {
				c := f.client(t)
				var hdr map[string]string
				if who == "gate" {
					hdr = gate
				} else {
					c.login(who)
				}
				for _, r := range routes {
					want := http.StatusForbidden
					if who == "gate" {
						want = map[string]int{"GET": gateGet, "POST": gatePost}[r.method]
					}
					var form url.Values
					if r.form != nil {
						form = url.Values{"csrf_token": {c.csrf}}
						for k, v := range r.form {
							form[k] = v
						}
					}
					if resp, _ := c.do(r.method, r.path, form, hdr); resp.StatusCode != want {
						t.Errorf("%s %s %s: %d, want %d", who, r.method, r.path, resp.StatusCode, want)
					}
				}
			}
			var n int
			must(t, f.db.R.QueryRow(`SELECT COUNT(*) FROM breaches WHERE actions = '' OR closed_at IS NOT NULL OR authority_notified_at IS NOT NULL`).Scan(&n))
			var total int
			must(t, f.db.R.QueryRow(`SELECT COUNT(*) FROM breaches`).Scan(&total))
			if total != 1 || n != 0 {
				t.Errorf("refused requests changed the register: %d breaches, %d changed", total, n)
			}
		})
	}
}
