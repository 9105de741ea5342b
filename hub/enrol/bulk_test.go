package enrol

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/facetemplates"
)

func TestParseRosterRefusesBadFiles(t *testing.T) {
	utf16 := []byte{'p', 0, 'e', 0, 'r', 0} // without a BOM (with one it is read: TestSecurityRosterEncodings)
	cases := []struct {
		name, csv, field string
	}{
		{"utf16", string(utf16), "file"},
		{"latin1", "personal_id,consent_guardian\n000000000001,Nguy\xe3n\n", "file"},
		{"formula", "personal_id,consent_guardian\n000000000001,\"=HYPERLINK(\"\"http://x\"\")\"\n", "consent_guardian"},
		{"formula-at", "personal_id,consent_ref\n000000000001,@SUM(A1)\n", "consent_ref"},
		{"bad id", "personal_id\n12345\n", "personal_id"},
		{"duplicate", "personal_id\n000000000001\n000000000001\n", "personal_id"},
		{"traversal", "personal_id,photos\n000000000001,../../etc/passwd\n", "photos"},
		{"no id column", "name\nAn\n", "header"},
		{"quote", "personal_id,photos\n000000000001,\"a.jpg\n", "row"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseRoster(strings.NewReader(c.csv))
			var re RosterErrors
			if !errors.As(err, &re) || len(re) == 0 {
				t.Fatalf("accepted: %v", err)
			}
			found := false
			for _, e := range re {
				found = found || e.Field == c.field
			}
			if !found || re[0].Line < 1 {
				t.Fatalf("errors %v, want one on %s", re, c.field)
			}
		})
	}
	rows, err := ParseRoster(strings.NewReader("\xef\xbb\xbfpersonal_id;photos;consent_ref;consent_pupil\n000000000001;a.jpg|b.jpg;DK-1;có\n"))
	if err != nil || len(rows) != 1 || len(rows[0].Photos) != 2 || !rows[0].ConsentPupil {
		t.Fatalf("good roster: %+v %v", rows, err)
	}
}

func TestEnrolMainBadRosterStoresNothing(t *testing.T) {
	f := newFixture(t)
	roster := filepath.Join(f.dir, "roster.csv")
	os.WriteFile(roster, []byte("personal_id,photos\n000000000001,bona.jpg\n000000000002,=cmd|' /C calc'!A0\n"), 0o600)
	var out, errb bytes.Buffer
	err := EnrolMain(context.Background(), []string{"--roster", roster, "--photos", filepath.Dir(photoPath(t, "bona.jpg")),
		"--db", f.db.Path, "--key-file", filepath.Join(f.dir, "nokey"), "--report", filepath.Join(f.dir, "r.csv")}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "formula") || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("bad roster: %v", err)
	}
	if n := f.count(t, `SELECT count(*) FROM face_templates`); n != 0 {
		t.Fatal("templates stored from a refused roster")
	}
	if _, err := os.Stat(filepath.Join(f.dir, "r.csv")); err == nil {
		t.Fatal("a report was written for a refused roster")
	}
}

// TestBulkProgressReportAndResumeAfterKill runs `hub enrol` as a real
// child process, kills it with SIGKILL mid-run, runs it again and checks
// that it resumes, writes a complete report and never enrols a photo twice.
func TestBulkProgressReportAndResumeAfterKill(t *testing.T) {
	f := newFixture(t)
	keyFile := filepath.Join(f.dir, "template.key")
	if err := os.WriteFile(keyFile, []byte(hex.EncodeToString(bytes.Repeat([]byte{9}, facetemplates.KeySize))), 0o600); err != nil {
		t.Fatal(err)
	}
	srcs := []string{"bona.jpg", "chaeyeon.jpg", "chaeyoung.jpg", "elkie.jpg", "eunwoo.jpg", "joy.jpg", "luda.jpg",
		"meiqi.jpg", "nana.jpg", "nayoung.jpg", "rena.jpg", "sejeong.jpg", "seulgi.jpg", "tzuyu.jpg", "yujin.jpg", "pristin.jpg"}
	photos := filepath.Join(f.dir, "photos")
	os.Mkdir(photos, 0o700)
	var roster strings.Builder
	roster.WriteString("personal_id,consent_ref,consent_guardian,consent_pupil\n")
	var ids []string
	for i, s := range srcs {
		id := fmt.Sprintf("%012d", 100+i)
		ids = append(ids, id)
		if _, err := f.db.W.Exec(`INSERT INTO pupils(id, school_id, class_id, full_name, date_of_birth) VALUES (?, 's1', 'c1', 'Học sinh', '2017-01-01')`, id); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(photoPath(t, s), filepath.Join(photos, id+".jpg")); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&roster, "%s,DK-%d,Phụ huynh %d,yes\n", id, i, i)
	}
	// One pupil with no photo, one unknown to the roster database.
	fmt.Fprintf(&roster, "%s,,,\n", pupilC)
	fmt.Fprintf(&roster, "%s,DK-X,X,yes\n", "999999999999")
	os.WriteFile(filepath.Join(photos, "999999999999.jpg"), readPhotoT(t, "bona2.jpg"), 0o600)
	rosterPath := filepath.Join(f.dir, "roster.csv")
	os.WriteFile(rosterPath, []byte(roster.String()), 0o600)
	report := filepath.Join(f.dir, "report.csv")
	args := []string{"--roster", rosterPath, "--photos", photos, "--db", f.db.Path, "--key-file", keyFile,
		"--models", os.Getenv("MODELS_DIR"), "--workers", "1", "--report", report}
	child := func() *exec.Cmd {
		a, _ := json.Marshal(args)
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "ENROL_TEST_CHILD=1", "ENROL_TEST_ARGS="+string(a), "OPENBLAS_NUM_THREADS=1")
		return cmd
	}
	// First run: kill it once a few pupils are done.
	cmd := child()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	progRe := regexp.MustCompile(`\] (\d+)/(\d+) pupils · (\d+) photos · [0-9.]+ photos/s · ETA [0-9:-]+`)
	sc := bufio.NewScanner(stderr)
	var firstOut []string
	killed := false
	deadline := time.AfterFunc(3*time.Minute, func() { cmd.Process.Kill() })
	for sc.Scan() {
		line := sc.Text()
		firstOut = append(firstOut, line)
		if m := progRe.FindStringSubmatch(line); m != nil {
			if n, _ := strconv.Atoi(m[1]); n >= 4 && !killed {
				cmd.Process.Kill()
				killed = true
			}
		}
	}
	deadline.Stop()
	werr := cmd.Wait()
	if !killed || werr == nil {
		t.Fatalf("first run was not killed mid-run (killed=%v, exit=%v):\n%s", killed, werr, strings.Join(firstOut, "\n"))
	}
	var doneItems int
	f.db.R.QueryRow(`SELECT count(DISTINCT pupil_id) FROM enrol_items`).Scan(&doneItems)
	if doneItems < 1 || doneItems >= len(srcs) {
		t.Fatalf("after the kill %d pupils are recorded; want a partial run", doneItems)
	}
	// Second run: resumes and finishes.
	cmd = child()
	var out2, err2 bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out2, &err2
	if err := cmd.Run(); err != nil {
		t.Fatalf("second run: %v\n%s\n%s", err, out2.String(), err2.String())
	}
	if !strings.Contains(err2.String(), "resuming:") || !progRe.MatchString(err2.String()) {
		t.Fatalf("second run did not resume with progress:\n%s", err2.String())
	}
	if !strings.Contains(out2.String(), fmt.Sprintf("%d pupils:", len(ids)+2)) {
		t.Fatalf("summary: %s", out2.String())
	}
	// The report: every pupil once, with the right outcome.
	rf, err := os.Open(report)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(rf).ReadAll()
	rf.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(ids)+3 {
		t.Fatalf("report has %d lines, want %d", len(recs), len(ids)+3)
	}
	status := map[string][]string{}
	for _, r := range recs[1:] {
		if _, dup := status[r[0]]; dup {
			t.Fatalf("pupil %s twice in the report", r[0])
		}
		status[r[0]] = r
	}
	if s := status[ids[len(ids)-1]]; s[1] != "rejected" || !strings.Contains(s[6], "more than one face") || !strings.Contains(s[7], "nhiều hơn một khuôn mặt") {
		t.Fatalf("group photo row: %v", s)
	}
	if s := status[pupilC]; s[1] != "no_photos" {
		t.Fatalf("pupil without photo: %v", s)
	}
	if s := status["999999999999"]; s[1] != "unknown_pupil" {
		t.Fatalf("unknown pupil: %v", s)
	}
	enrolled := 0
	for _, id := range ids[:len(ids)-1] {
		switch status[id][1] {
		case "enrolled", "needs_review", "rejected":
		default:
			t.Fatalf("pupil %s: %v", id, status[id])
		}
		if status[id][1] == "enrolled" {
			enrolled++
		}
		// Never enrolled twice, however the kill fell.
		if n := f.count(t, `SELECT count(*) FROM face_templates WHERE pupil_id = ?`, id); n > 1 {
			t.Fatalf("pupil %s has %d templates from one photo", id, n)
		}
	}
	if enrolled < len(ids)/2 {
		t.Fatalf("only %d of %d good photos enrolled: %v", enrolled, len(ids)-1, status)
	}
	// Consent came from the roster's columns and was audited.
	if n := f.count(t, `SELECT count(*) FROM consents WHERE document_ref LIKE 'DK-%' AND pupil_consented = 1`); n < len(ids) {
		t.Fatalf("%d consents recorded from the roster", n)
	}
	var js struct {
		Pupils []PupilReport `json:"pupils"`
	}
	jb, err := os.ReadFile(strings.TrimSuffix(report, ".csv") + ".json")
	if err != nil || json.Unmarshal(jb, &js) != nil || len(js.Pupils) != len(ids)+2 {
		t.Fatalf("JSON report: %v", err)
	}
	resumed := 0
	for _, p := range js.Pupils {
		if p.Resumed {
			resumed++
		}
	}
	if resumed < 1 {
		t.Fatal("no pupil reported as resumed from the killed run")
	}
}
