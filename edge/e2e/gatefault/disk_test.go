package gatefault

import (
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/edge/publish/brokertest"
	"github.com/diemdanh/diemdanh/models/wire"
)

// mountTmpfs mounts a tmpfs of size on a new folder and unmounts it in
// t.Cleanup; it fails (never skips) where the machine cannot (not root).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "gate-data")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("this fault test needs a small filesystem: mount -t tmpfs (run as root): %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	return dir
}

// fillDisk writes path until its filesystem has no room left.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !strings.Contains(err.Error(), "no space") {
				t.Fatalf("filling %s: %v", path, err)
			}
			return
		}
	}
}

// outboxEventsRO lists the event IDs (with their pupils) in the outbox at
// path, read-only while the gate runs (nothing leaves it while the hub is
// down).
func outboxEventsRO(t *testing.T, path string) map[string]string {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro&_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT payload FROM outbox WHERE kind = ?`, wire.TopicKindEvents)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			t.Fatal(err)
		}
		ev, err := wire.DecodeEvent(b)
		if err != nil {
			t.Fatal(err)
		}
		out[ev.EventID] = ev.StudentID
	}
	if len(out) == 0 {
		t.Fatal("the outbox holds no event although edge_events_total says one was committed")
	}
	return out
}

// TestFaultDiskFull: the real gate keeps its data on a small tmpfs and
// plays a gate video of six pupils in real time, one passing every ten
// seconds or so.
//  1. The hub is down: the first pupils are committed to the outbox.
//  2. The disk is filled: the next pupil is refused loudly (one ALARM log
//     line, edge_outbox_disk_full 1, edge_outbox_refused_total
//     {reason="disk_full"}). The hub starts: the committed events are
//     delivered, and the heartbeat's disk_full reaches it (gate row, audit).
//  3. The filler is deleted while the video plays: the gate takes events
//     again by itself (the hub sees disk_full cleared, audited) and the
//     later pupils are stored and delivered.
//
// At the hub every committed event is stored exactly once and no pupil twice.
func TestFaultDiskFull(t *testing.T) {
	dir := t.TempDir()
	bin := buildEdge(t, dir)
	so, _ := gateVideo(t, dir, "v", "faces", -1, 5, 60)
	data := mountTmpfs(t, "8m")
	hubDB := filepath.Join(dir, "hub.db")
	seedHub(t, hubDB, "07:00", 15, so.GalleryOut)
	hubAddr, err := brokertest.FreePort()
	if err != nil {
		t.Fatal(err)
	}

	// 1. Hub down: the first pupils are committed.
	r := startEdge(t, bin, dir, "gate", data, so.Out, true, so.GalleryOut, hubAddr, "")
	waitFor(t, 60*time.Second, "a committed event", func() bool { return r.metric("edge_events_total") >= 1 })

	// 2. Disk full, then the hub starts.
	fillDisk(t, filepath.Join(data, "filler"))
	waitFor(t, 40*time.Second, "a refused event", func() bool {
		return r.metric(`edge_outbox_refused_total{reason="disk_full"}`) >= 1
	})
	if v := r.metric("edge_outbox_disk_full"); v != 1 {
		t.Fatalf("edge_outbox_disk_full = %v while events are refused", v)
	}
	committed := outboxEventsRO(t, filepath.Join(data, "edge.db")) // the hub is still down: all of them
	hub := startHubAt(t, hubDB, hubAddr)
	waitFor(t, 20*time.Second, "committed events and disk_full at the hub", func() bool {
		return hub.count(t, `SELECT count(*) FROM events`) >= len(committed) &&
			hub.count(t, `SELECT count(*) FROM gates WHERE id = ? AND last_heartbeat LIKE '%"disk_full":true%'`, gate) == 1 &&
			hub.count(t, `SELECT count(*) FROM audit_log WHERE action = 'gate_disk_full' AND subject = ?`, "gate:"+gate) == 1
	})

	// 3. Space returns while the video plays.
	if err := os.Remove(filepath.Join(data, "filler")); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	waitFor(t, 10*time.Second, "disk_full cleared at the hub", func() bool {
		return hub.count(t, `SELECT count(*) FROM audit_log WHERE action = 'gate_disk_ok' AND subject = ?`, "gate:"+gate) == 1
	})
	t.Logf("space back at the hub %s after the filler was deleted", time.Since(freed).Round(time.Millisecond))
	r.waitExit(t, 90*time.Second)
	logText := r.logText()
	if n := strings.Count(logText, "ALARM outbox disk full"); n != 1 {
		t.Errorf("%d ALARM lines in the gate's log, want 1", n)
	}
	if !strings.Contains(logText, "outbox disk space back") {
		t.Error("the gate never logged that space came back")
	}
	checkDiskFullAtHub(t, hub, committed, freed)
}

// checkDiskFullAtHub: every event committed before the disk filled is at
// the hub once, others were stored only after space returned, and no
// pupil is there twice.
func checkDiskFullAtHub(t *testing.T, hub *faultHub, committedA map[string]string, freed time.Time) {
	t.Helper()
	events := hub.events(t)
	byID := map[string]bool{}
	pupils := map[string]string{}
	afterSpace := 0
	for _, e := range events {
		if byID[e.id] {
			t.Errorf("event %s stored twice", e.id)
		}
		byID[e.id] = true
		if e.student != "" {
			if other, dup := pupils[e.student]; dup {
				t.Errorf("pupil %s stored twice (events %s and %s)", e.student, other, e.id)
			}
			pupils[e.student] = e.id
		}
		if _, isA := committedA[e.id]; !isA {
			if e.recv < freed.UnixMilli() {
				t.Errorf("event %s (not committed before the disk filled) stored at %d, before space returned (%d)", e.id, e.recv, freed.UnixMilli())
			}
			afterSpace++
		}
	}
	for id := range committedA {
		if !byID[id] {
			t.Errorf("event %s committed before the disk filled never reached the hub", id)
		}
	}
	if afterSpace == 0 {
		t.Error("no event was stored after space returned")
	}
	t.Logf("hub: %d events (%d committed before the disk filled, %d after space returned), %d pupils",
		len(events), len(committedA), afterSpace, len(pupils))
}
