package app

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/models/wire"
)

// TestWithdrawReachesRunningEdgeProcess (issue 5, "consent withdrawal
// propagates to a running edge process") with real processes: `hub demo`
// seeds pupils with consent and templates and runs `bin/edge run` syncing
// its gallery from the hub. Once the gate's on-disk gallery holds pupil P,
// the first admin (one-time password from the hub's log, changed as the
// hub demands) withdraws P's consent through the HTTP API; within 10 s the
// running gate's gallery file no longer holds P (and its version grew),
// and the hub has P on manual attendance with no templates left. SIGINT
// then stops the hub and its gate cleanly.
func TestWithdrawReachesRunningEdgeProcess(t *testing.T) {
	d := startDemo(t)
	edgeGallery := filepath.Join(d.data, "demo", "edge", "gallery.json")

	// Wait for the gate's first synced gallery.
	var before *wire.GalleryDoc
	deadline := time.Now().Add(150 * time.Second)
	for before == nil || len(before.People) == 0 {
		select {
		case err := <-d.exited:
			t.Fatalf("hub demo exited early: %v", err)
		case <-time.After(500 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gate's gallery %s never filled within 150 s", edgeGallery)
		}
		before, _, _ = wire.LoadGalleryFile(edgeGallery)
	}
	pupil := before.People[0].StudentID
	t.Logf("gate gallery v%d with %d people; withdrawing %s", before.Version, len(before.People), pupil)

	c := adminClient(t, d, pupil)
	status, body := c.post(t, "/api/v1/pupils/"+pupil+"/consent/withdraw", map[string]any{"reason": "phụ huynh rút đồng ý (e2e test)"})
	if status != http.StatusOK {
		t.Fatalf("withdraw: HTTP %d %s", status, body)
	}
	withdrawn := time.Now()

	// The running gate drops P within 10 s.
	var after *wire.GalleryDoc
	for {
		if doc, _, err := wire.LoadGalleryFile(edgeGallery); err == nil && doc.Version > before.Version {
			after = doc
			if !slices.ContainsFunc(doc.People, func(p wire.GalleryPerson) bool { return p.StudentID == pupil }) {
				break
			}
		}
		if time.Since(withdrawn) > 10*time.Second {
			t.Fatalf("pupil %s still in the running gate's gallery 10 s after withdrawal (newest file: %+v)", pupil, versionOf(after))
		}
		select {
		case err := <-d.exited:
			t.Fatalf("hub demo exited: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Logf("gate gallery v%d -> v%d (%d -> %d people) %s after withdrawal",
		before.Version, after.Version, len(before.People), len(after.People), time.Since(withdrawn).Round(time.Millisecond))
	if len(after.People) != len(before.People)-1 {
		t.Errorf("gate gallery went from %d to %d people; want exactly P removed", len(before.People), len(after.People))
	}
	// The gate process that got it is still the one the demo started.
	if strings.Count(d.stderr.String(), "gate stopped") > 0 {
		t.Error("the gate restarted during the test")
	}

	db, err := sql.Open("sqlite3", "file:"+filepath.Join(d.data, "hub.db")+"?mode=ro&_busy_timeout=2000")
	if err != nil {
		t.Fatal(err)
	}
	var manual bool
	if err := db.QueryRow(`SELECT manual_attendance FROM pupils WHERE id = ?`, pupil).Scan(&manual); err != nil {
		t.Fatal(err)
	}
	var templates int
	if err := db.QueryRow(`SELECT count(*) FROM face_templates WHERE pupil_id = ?`, pupil).Scan(&templates); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if !manual {
		t.Errorf("pupil %s not on manual attendance after withdrawal", pupil)
	}
	if templates != 0 {
		t.Errorf("pupil %s still has %d templates after withdrawal", pupil, templates)
	}

	if err := d.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.exited:
		if err != nil {
			t.Fatalf("hub demo did not exit cleanly: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("hub demo did not stop within 60 s of SIGINT")
	}
	for _, want := range []string{"gate stopped", "hub stopped"} {
		if !strings.Contains(d.stderr.String(), want) {
			t.Errorf("log lacks %q", want)
		}
	}
	if err := syscall.Kill(-d.cmd.Process.Pid, 0); err == nil {
		t.Error("processes of the demo are still running")
	}
}

func versionOf(doc *wire.GalleryDoc) string {
	if doc == nil {
		return "none newer"
	}
	return fmt.Sprintf("v%d, %d people", doc.Version, len(doc.People))
}

// sessionClient is a browser-like API client: session cookie + CSRF header.
type sessionClient struct {
	base string
	hc   *http.Client
	csrf string
}

func (c *sessionClient) post(t *testing.T, path string, v any) (int, string) {
	t.Helper()
	b, _ := json.Marshal(v)
	req, err := http.NewRequest(http.MethodPost, c.base+path, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.csrf != "" {
		req.Header.Set("X-CSRF-Token", c.csrf)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out bytes.Buffer
	_, _ = out.ReadFrom(resp.Body)
	return resp.StatusCode, out.String()
}

var (
	otpRe  = regexp.MustCompile(`one_time_password"?[=:]\s*"?([^\s"]+)`)
	userRe = regexp.MustCompile(`first admin account created.*?username"?[=:]\s*"?([^\s"]+)`)
)

// adminClient logs in as the demo's first admin with the one-time password
// the hub logged, checks that it cannot withdraw pupil's consent yet, and
// changes the password as the hub requires before anything else.
func adminClient(t *testing.T, d *demoRun, pupil string) *sessionClient {
	t.Helper()
	logs := d.stderr.String()
	otp, user := otpRe.FindStringSubmatch(logs), userRe.FindStringSubmatch(logs)
	if otp == nil || user == nil {
		t.Fatal("the hub did not log the first admin's one-time password")
	}
	jar, _ := cookiejar.New(nil)
	c := &sessionClient{base: "http://" + d.httpAddr, hc: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
	status, body := c.post(t, "/api/v1/auth/login", map[string]string{"username": user[1], "password": otp[1]})
	if status != http.StatusOK {
		t.Fatalf("login as %s: HTTP %d %s", user[1], status, body)
	}
	var lr struct {
		CSRF string `json:"csrf_token"`
	}
	if err := json.Unmarshal([]byte(body), &lr); err != nil || lr.CSRF == "" {
		t.Fatalf("login answer without csrf_token: %v %s", err, body)
	}
	c.csrf = lr.CSRF
	// Before the change, the one-time password opens nothing else.
	if status, body := c.post(t, "/api/v1/pupils/"+pupil+"/consent/withdraw", map[string]string{}); status != http.StatusForbidden {
		t.Fatalf("an account with a one-time password reached the withdraw route: HTTP %d %s", status, body)
	}
	newPw := "e2e-Withdraw-" + otp[1]
	if status, body := c.post(t, "/api/v1/auth/password", map[string]string{"old_password": otp[1], "new_password": newPw}); status != http.StatusOK {
		t.Fatalf("change password: HTTP %d %s", status, body)
	}
	return c
}
