package notify

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/store"
)

const childEnv = "DIEMDANH_NOTIFY_CHILD_DB"

// runChild is the child process of TestKillWithPendingNotifications: this
// test binary re-run to host only the notifier on the hub's database until
// killed (a fast, deterministic check of the outbox alone; the whole
// bin/hub is killed in TestKillRealHubWithPendingNotifications).
func runChild() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	db, err := store.Open(ctx, os.Getenv(childEnv), nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer db.Close()
	cfg := Default()
	cfg.Push.Enabled = false
	cfg.SMTP.Addr = os.Getenv("DIEMDANH_NOTIFY_CHILD_SMTP")
	cfg.Workers = 1
	cfg.Poll = 50 * time.Millisecond
	cfg.BackoffBase = 100 * time.Millisecond
	n, err := New(ctx, cfg, db, nil, time.Now)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("ready")
	_ = n.Run(ctx)
	return 0
}

func startChild(t *testing.T, dbPath, smtpAddr string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+dbPath, "DIEMDANH_NOTIFY_CHILD_SMTP="+smtpAddr)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

func TestKillWithPendingNotifications(t *testing.T) {
	const pupils = 12
	dbPath := filepath.Join(t.TempDir(), "hub.db")
	db := openFixture(t, dbPath)
	// 12 pupils with one e-mail guardian each.
	now := time.Now()
	for i := 0; i < pupils; i++ {
		id := fmt.Sprintf("0990000000%02d", i)
		mustExec(t, db, `INSERT INTO pupils(id, school_id, class_id, full_name) VALUES (?, 's1', 'c1', ?)`, id, fmt.Sprintf("Học sinh %d", i))
		mustExec(t, db, `INSERT INTO guardians(pupil_id, full_name, email) VALUES (?, 'PH', ?)`, id, fmt.Sprintf("ph%d@example.com", i))
	}
	// Initialise the cursor before the events exist, as a running hub would.
	if _, err := New(context.Background(), func() Config { c := Default(); c.Push.Enabled = false; return c }(), db, nil, time.Now); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < pupils; i++ {
		insertEvent(t, db, fmt.Sprintf("0990000000%02d", i), "g1", "in", now)
	}
	sink := &smtpSink{mailDelay: 400 * time.Millisecond}
	addr := startSMTP(t, sink)

	child := startChild(t, dbPath, addr)
	deadline := time.Now().Add(20 * time.Second)
	// Kill while the 4th message is mid-transfer (the server is holding its
	// MAIL FROM): three are delivered and recorded, nine are pending, one
	// of them in flight. (Killing right after the server accepted a message
	// but before the hub recorded it is the at-least-once window that the
	// stable Message-ID exists for; it is not what this test is about.)
	for sink.MailCalls() < 4 {
		if time.Now().After(deadline) {
			child.Process.Kill()
			t.Fatal("the hub process delivered nothing")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	child.Wait()
	before := len(sink.Mails())
	var pending int
	db.R.QueryRow(`SELECT COUNT(*) FROM notify_outbox WHERE status = 'pending'`).Scan(&pending)
	t.Logf("killed -9 after %d deliveries; %d pending in the outbox", before, pending)
	if before < 3 || pending != pupils-before {
		t.Fatalf("the kill came too late to test anything (pending %d)", pending)
	}

	child = startChild(t, dbPath, addr)
	defer func() { child.Process.Signal(syscall.SIGTERM); child.Wait() }()
	deadline = time.Now().Add(30 * time.Second)
	for {
		var sent int
		db.R.QueryRow(`SELECT COUNT(*) FROM notify_outbox WHERE status = 'sent'`).Scan(&sent)
		if sent == pupils {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d sent after restart", sent, pupils)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // would catch a late duplicate
	seen := map[string]int{}
	for _, m := range sink.Mails() {
		seen[m.To]++
	}
	for i := 0; i < pupils; i++ {
		to := fmt.Sprintf("ph%d@example.com", i)
		if seen[to] != 1 {
			t.Errorf("%s received %d messages, want exactly 1", to, seen[to])
		}
	}
	if len(sink.Mails()) != pupils {
		t.Errorf("total %d mails, want %d", len(sink.Mails()), pupils)
	}
}
