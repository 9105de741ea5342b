package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/diemdanh/diemdanh/hub/auth"
	"github.com/diemdanh/diemdanh/models/conf"
)

// otpCatcher passes log records on to its handler and keeps the first
// admin's one-time password from the record auth's Bootstrap writes when
// it creates the account, so the demo can print it with the URL.
type otpCatcher struct {
	slog.Handler
	got *adminLogin
}

// adminLogin is how the newcomer logs in.
type adminLogin struct {
	mu             sync.Mutex
	user, password string // password "" when not known (already changed)
}

func (h otpCatcher) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn || h.Handler.Enabled(ctx, l)
}

func (h otpCatcher) Handle(ctx context.Context, r slog.Record) error {
	var user, otp string
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "one_time_password":
			otp = a.Value.String()
		case "username":
			user = a.Value.String()
		}
		return true
	})
	if otp != "" {
		h.got.mu.Lock()
		h.got.user, h.got.password = user, otp
		h.got.mu.Unlock()
	}
	if !h.Handler.Enabled(ctx, r.Level) {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h otpCatcher) WithAttrs(as []slog.Attr) slog.Handler {
	return otpCatcher{h.Handler.WithAttrs(as), h.got}
}

func (h otpCatcher) WithGroup(name string) slog.Handler {
	return otpCatcher{h.Handler.WithGroup(name), h.got}
}

// resolveAdminLogin completes l after New: a one-time password caught now
// is kept in <demo>/admin-password (0600) so a later `make run` on the same
// data can print it again while the admin has not changed it yet.
func resolveAdminLogin(ctx context.Context, a *App, demoDir string, l *adminLogin) error {
	saved := filepath.Join(demoDir, "admin-password")
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.password != "" {
		if err := conf.WriteFileAtomic(saved, []byte(l.user+"\n"+l.password+"\n"), 0o600); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		return nil
	}
	accounts, err := a.Mods.Auth.ListAccounts(ctx)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	b, _ := os.ReadFile(saved)
	savedUser, savedOTP, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	for _, acc := range accounts {
		if acc.Role != auth.RoleAdmin || !acc.Active {
			continue
		}
		if l.user == "" || acc.Username == savedUser {
			l.user = acc.Username
		}
		if acc.Username == savedUser && acc.MustChange {
			l.password = savedOTP
		}
	}
	return nil
}

// demoBanner is what `make run` prints once the hub and the gate run.
type demoBanner struct {
	url, board     string
	user, password string
	mqtt, db       string
	gate           string   // what the gate reads
	people         []string // who is enrolled and who walks
	arrivals       string   // who the board will show arriving
	photosDir      string
	testData       string   // --testdata: the pupils are the shared test photos, not the demo photos
	missing        []string // demo photos missing (the demo then has no pupils)
	placeholder    string   // the pupil to enrol from the browser when photos are missing
	dataDir        string
}

func (b demoBanner) print(w io.Writer) {
	line := func(label, format string, args ...any) {
		fmt.Fprintf(w, "  %-10s %s\n", label, fmt.Sprintf(format, args...))
	}
	if len(b.missing) == 0 {
		fmt.Fprintln(w, "DiemDanh demo is running.")
	} else {
		fmt.Fprintln(w, "DiemDanh demo is running WITHOUT its demo pupils: the demo photos are missing.")
		line("Missing", "%s in %s", strings.Join(b.missing, ", "), b.photosDir)
		line("", "(the test images of %s; `%s` fetches them, and `make run` tries it first)", demoPhotoPackage, demoPhotoFetch)
	}
	line("Open", "%s/login (pages in Vietnamese; in English: %s/lang/en?next=/login)", b.url, b.url)
	if b.password != "" {
		line("Log in", "as %s with the one-time password %s (you will then choose your own)", b.user, b.password)
	} else {
		line("Log in", "as %s with the password you chose (forgotten it? stop, delete %s and run `make run` again for a fresh demo)", b.user, b.dataDir)
	}
	line("Board", "%s: class 6A of the demo school", b.board)
	line("Gate", "%s, a child process (bin/edge) reading %s", DemoGate, b.gate)
	if len(b.missing) == 0 {
		label := "Pupils"
		for _, p := range b.people {
			line(label, "%s", p)
			label = ""
		}
		if b.testData == "" {
			line("Photos", "%s: %s; cached in %s", demoPhotoPackage, demoPhotoLicence, b.photosDir)
		}
		line("Expect", "within a few seconds of this line the board shows %s arriving, each also printed below;", b.arrivals)
		line("", "after 07:15 school time (Asia/Ho_Chi_Minh) they are marked late (\"Đi muộn\"): the demo class starts at 07:00")
		line("", "this shows the product working; it is not a measure of recognition accuracy")
	} else {
		line("Enrol", "from the browser: log in, open %s/admin/enrol?pupil=%s (pupil \"%s\", consent recorded) and upload 1 to 10 photos of one face",
			b.url, b.placeholder, demoPlaceholderName)
		line("", "the gate sees that pupil only through a camera: connect one and run `make run` again (or `bin/hub demo --camera 0`)")
	}
	line("Also", "built-in MQTT broker on %s; SQLite database %s", b.mqtt, b.db)
	line("Stop", "Ctrl-C (stops the gate, then the hub)")
}
