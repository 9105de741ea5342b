package web

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// fortyPupils is a class list as a school keeps it: 40 pupils with
// Vietnamese names (diacritics), 12-digit personal IDs, dates of birth and
// a guardian each, the class given by its name.
func fortyPupils() (csv string, ids, names []string) {
	family := []string{"Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Đặng", "Bùi", "Đỗ", "Hồ", "Ngô", "Dương", "Lý", "Võ"}
	middle := []string{"Thị", "Văn", "Minh", "Ngọc", "Đức", "Gia", "Bảo", "Thu"}
	given := []string{"An", "Bình", "Châu", "Dũng", "Hà", "Hạnh", "Khánh", "Linh", "Lộc", "Mai", "Nhung", "Phúc", "Quân", "Sơn", "Thảo", "Trâm", "Uyên", "Việt", "Xuân", "Yến"}
	var b strings.Builder
	b.WriteString("personal_id,full_name,class,date_of_birth,gender,guardian1_name,guardian1_phone,guardian1_relation\n")
	for i := 0; i < 40; i++ {
		id := fmt.Sprintf("07915%07d", 1000+i)
		name := family[i%len(family)] + " " + middle[(i/3)%len(middle)] + " " + given[i%len(given)]
		ids, names = append(ids, id), append(names, name)
		fmt.Fprintf(&b, "%s,%s,3A,2017-%02d-%02d,%s,%s,09%08d,Mẹ\n", id, name, 1+i%12, 1+i%28,
			map[bool]string{true: "female", false: "male"}[i%2 == 0], "Mẹ của "+name, 10000000+i)
	}
	return b.String(), ids, names
}

// TestBrowserSchoolSetup: a school's admin, all in the browser, creates a
// class, imports 40 pupils from a CSV file, adds a guardian with the
// parent's account and a teacher linked to the class, makes her the
// homeroom teacher; the teacher signs in with her one-time password and
// sees the 40 pupils on her live board, where a gate's arrival shows.
func TestBrowserSchoolSetup(t *testing.T) {
	f, _ := newSchoolFixture(t, true)
	ctx := browser(t)
	browserLogin(t, ctx, f.ts.URL, "admin")
	text := func(sel string) string { return attr(t, ctx, `document.querySelector(`+jsq(sel)+`).innerText`) }

	// A class.
	must(t, chromedp.Do(ctx, chromedp.Navigate(f.ts.URL+"/admin"), chromedp.WaitVisible(chromedp.CSS("#school-link")),
		chromedp.Click(chromedp.CSS("#school-link")), chromedp.WaitVisible(chromedp.CSS("#school-counts")),
		chromedp.Click(chromedp.CSS("#sa-tab-classes")), chromedp.WaitVisible(chromedp.CSS("#class-form")),
		chromedp.SendKeys(chromedp.CSS("#class-id"), "3a"), chromedp.SendKeys(chromedp.CSS("#class-name"), "3A"),
		chromedp.SetValue(chromedp.CSS("#class-grade"), "3"),
		chromedp.Click(chromedp.CSS("#class-save")), chromedp.WaitVisible(chromedp.CSS(`tr[data-class="3a"]`))))
	if s := text("p.flash"); !strings.Contains(s, "3A") {
		t.Errorf("after creating the class: %q", s)
	}
	checkVietnamese(t, ctx)

	// 40 pupils from a CSV file; first with a typo in one personal ID:
	// the row is reported and nothing is imported.
	csv, ids, names := fortyPupils()
	dir := t.TempDir()
	badFile, file := filepath.Join(dir, "co-loi.csv"), filepath.Join(dir, "danh-sach-lop-3A.csv")
	must(t, os.WriteFile(badFile, []byte(strings.Replace(csv, ids[7], ids[7][:11], 1)), 0o644))
	must(t, os.WriteFile(file, []byte("\uFEFF"+csv), 0o644))
	must(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#sa-tab-import")), chromedp.WaitVisible(chromedp.CSS("#import-pupils")),
		chromedp.SetUploadFiles(chromedp.CSS("#pupils-file"), []string{badFile}),
		chromedp.Click(chromedp.CSS("#import-pupils-submit")), chromedp.WaitVisible(chromedp.CSS("#report-table"))))
	if row, c := text(`#report-table tr[data-line="9"]`), text("#report-created"); !strings.Contains(row, "personal_id") || c != "0" ||
		!strings.Contains(text("p.error"), "không nhập dòng nào") {
		t.Errorf("refused file: row 9 %q, created %q", row, c)
	}
	if n := attr(t, ctx, `String(document.querySelectorAll("#report-table tbody tr").length)`); n != "1" {
		t.Errorf("%s rows reported, want 1", n)
	}
	screenshot(t, ctx, "school-import-refused.png")
	must(t, chromedp.Do(ctx, chromedp.SetUploadFiles(chromedp.CSS("#pupils-file"), []string{file}),
		chromedp.Click(chromedp.CSS("#import-pupils-submit")),
		chromedp.WaitVisible(`//h2[@id="h-report"][contains(., "danh-sach-lop-3A.csv")]`)))
	if c, a := text("#report-created"), attr(t, ctx, `document.getElementById("import-report").dataset.applied`); c != "40" || a != "true" {
		t.Fatalf("import report: created %q, applied %q:\n%s", c, a, text("main"))
	}
	screenshot(t, ctx, "school-import-report.png")

	var stored int
	must(t, f.db.R.QueryRow(`SELECT count(*) FROM pupils WHERE class_id = '3a'`).Scan(&stored))
	if stored != 40 {
		t.Errorf("%d pupils stored in 3a", stored)
	}

	// The pupils page lists them, in class 3A.
	must(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#sa-tab-pupils")), chromedp.WaitVisible(chromedp.CSS("#pupil-filter")),
		chromedp.SetValue(chromedp.CSS("#filter-class"), "3a"), chromedp.Submit(chromedp.CSS("#filter-class")),
		chromedp.WaitVisible(`//h2[@id="h-pupils"][. = "40 học sinh"]`)))
	if n := attr(t, ctx, `String(document.querySelectorAll("#pupil-list tbody tr").length)`); n != "40" {
		t.Errorf("pupils listed in 3A: %s", n)
	}
	list := text("#pupil-list")
	for _, n := range names {
		if !strings.Contains(list, n) {
			t.Errorf("pupil %q not listed", n)
		}
	}

	// A guardian with the parent's account, on the first pupil's page.
	must(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`tr[data-pupil="`+ids[0]+`"] a`)), chromedp.WaitVisible(chromedp.CSS("#guardian-form")),
		chromedp.SendKeys(chromedp.CSS("#guardian-name"), "Nguyễn Văn Tùng"), chromedp.SendKeys(chromedp.CSS("#guardian-relation"), "Bố"),
		chromedp.SendKeys(chromedp.CSS("#guardian-phone"), "0987654321"), chromedp.SendKeys(chromedp.CSS("#guardian-username"), "bo-cua-an"),
		chromedp.Click(chromedp.CSS("#guardian-save")), chromedp.WaitVisible(chromedp.CSS("#onetime"))))
	if u, pw := text("#onetime-user"), text("#onetime-password"); u != "bo-cua-an" || len(pw) < 12 {
		t.Errorf("parent's account: %q / %q", u, pw)
	}
	if g := text("#guardian-list"); !strings.Contains(g, "Nguyễn Văn Tùng") || !strings.Contains(g, "Mẹ của "+names[0]) {
		t.Errorf("guardians: %q", g)
	}
	if d := text("#attendance-today"); !regexp.MustCompile(`\d{2}/\d{2}/\d{4}`).MatchString(d) {
		t.Errorf("today's attendance without a dd/mm/yyyy date: %q", d)
	}
	screenshot(t, ctx, "school-pupil-guardian.png")

	// A teacher linked to 3A, then made its homeroom teacher.
	must(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#sa-tab-staff")), chromedp.WaitVisible(chromedp.CSS("#staff-form")),
		chromedp.SendKeys(chromedp.CSS("#staff-id"), "gv-3a"), chromedp.SendKeys(chromedp.CSS("#staff-name"), "Cô Trần Thị Hằng"),
		chromedp.SendKeys(chromedp.CSS("#staff-username"), "hang"), chromedp.Click(chromedp.CSS("#staff-class-3a")),
		chromedp.Click(chromedp.CSS("#staff-save")), chromedp.WaitVisible(chromedp.CSS("#onetime"))))
	otp := text("#onetime-password")
	if row := text(`tr[data-staff="gv-3a"]`); !strings.Contains(row, "hang") || !strings.Contains(row, "3A") {
		t.Errorf("teacher's row: %q", row)
	}
	screenshot(t, ctx, "school-staff-onetime.png")
	must(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS("#sa-tab-classes")), chromedp.WaitVisible(chromedp.CSS(`tr[data-class="3a"] a`)),
		chromedp.Click(chromedp.CSS(`tr[data-class="3a"] a`)), chromedp.WaitVisible(chromedp.CSS("#class-board")),
		chromedp.SetValue(chromedp.CSS("#class-teacher"), "gv-3a"), chromedp.Click(chromedp.CSS("#class-save")),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-class="3a"]`))))
	if row := text(`tr[data-class="3a"]`); !strings.Contains(row, "Cô Trần Thị Hằng") || !strings.Contains(row, "40") {
		t.Errorf("class row after setting the homeroom teacher: %q", row)
	}

	// The teacher's first login: change the one-time password, then her board.
	tctx := browser(t)
	must(t, chromedp.Do(tctx, chromedp.Navigate(f.ts.URL+"/login"), chromedp.WaitVisible(chromedp.CSS("#username")),
		chromedp.SendKeys(chromedp.CSS("#username"), "hang"), chromedp.SendKeys(chromedp.CSS("#password"), otp),
		chromedp.Click(chromedp.CSS("#login-submit")), chromedp.WaitVisible(chromedp.CSS("#old")),
		chromedp.SendKeys(chromedp.CSS("#old"), otp), chromedp.SendKeys(chromedp.CSS("#new"), "Mat-khau-moi-2025"),
		chromedp.Submit(chromedp.CSS("#new")), chromedp.WaitVisible(chromedp.CSS("#board")),
		chromedp.Poll[chromedp.Void](`document.body.dataset.live === "open"`, chromedp.WithPollingTimeout(10*time.Second))))
	if h := attr(t, tctx, `document.querySelector("h1").textContent`); h != "Điểm danh lớp 3A" {
		t.Errorf("board heading %q", h)
	}
	if n := attr(t, tctx, `String(document.querySelectorAll("#board tbody tr[data-pupil]").length)`); n != "40" {
		t.Fatalf("pupils on the board: %s", n)
	}
	board := attr(t, tctx, `document.getElementById("board").innerText`)
	for _, n := range names {
		if !strings.Contains(board, n) {
			t.Errorf("pupil %q not on the board", n)
		}
	}
	checkVietnamese(t, tctx)
	// A gate's arrival shows live.
	publishMQTT(t, f, event(ids[5], "in", time.Now()))
	must(t, chromedp.Do(tctx, chromedp.Poll[chromedp.Void](`["present","late"].indexOf(document.getElementById("p-`+ids[5]+`").dataset.status) >= 0`,
		chromedp.WithPollingTimeout(5*time.Second))))
	screenshot(t, tctx, "school-setup-board.png")
}

// jsq quotes s as a JavaScript string.
func jsq(s string) string { return "`" + strings.ReplaceAll(s, "`", "\\`") + "`" }
