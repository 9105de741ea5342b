package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"

	sqlite3 "github.com/mattn/go-sqlite3"
)

// ErrDiskFull is returned (wrapped) when the filesystem of the store is
// full: the message is not stored. Messages already in the outbox are
// kept and still delivered. It is an alarm condition: the store logs the
// first refusal and the return of space, counts every refusal
// (Refused), and DiskFull reports it until space returns.
var ErrDiskFull = errors.New("store: disk full")

// ReserveBytes is the size of the reserve file kept beside the database
// (path + ".reserve"). On a full disk the store deletes it, so that the
// deletes of acknowledged rows (which SQLite writes to its WAL) still
// find room and the outbox drains; it is written again when space
// returns.
const ReserveBytes = 512 << 10

// ResumeFreeBytes is the free space (beyond the reserve to write again)
// at which a store that refused messages for a full disk takes them again.
const ResumeFreeBytes = 1 << 20

// Refusal reasons (Refused).
const (
	RefusedDiskFull   = "disk_full"   // the filesystem is full
	RefusedOutboxFull = "outbox_full" // the outbox holds max_outbox rows
)

// diskState is the store's full-disk alarm.
type diskState struct {
	mu      sync.Mutex
	full    bool
	refused map[string]int64
}

// isDiskFull says whether err is SQLite's "database or disk is full"
// (or the OS's ENOSPC reported as an I/O error).
func isDiskFull(err error) bool {
	var se sqlite3.Error
	if !errors.As(err, &se) {
		return false
	}
	return se.Code == sqlite3.ErrFull || se.SystemErrno == syscall.ENOSPC
}

// reservePath is the reserve file of the database.
func (db *DB) reservePath() string { return db.path + ".reserve" }

// writeReserve writes the reserve file (an existing one is kept).
func (db *DB) writeReserve() error {
	if st, err := os.Stat(db.reservePath()); err == nil && st.Size() >= ReserveBytes {
		return nil
	}
	err := os.WriteFile(db.reservePath(), make([]byte, ReserveBytes), 0o600)
	if err != nil {
		os.Remove(db.reservePath())
	}
	return err
}

// freeBytes is the space left to unprivileged writers on the store's
// filesystem (-1 when unknown).
func (db *DB) freeBytes() int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(db.path), &st); err != nil {
		return -1
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// refuseLocked reports whether a message must be refused without trying
// it: the disk was full and space has not returned (free space under
// ResumeFreeBytes beyond the reserve). When space has returned it writes
// the reserve again and clears the alarm.
func (db *DB) refuseLocked() bool {
	if !db.disk.full {
		return false
	}
	if free := db.freeBytes(); free < ResumeFreeBytes+ReserveBytes {
		return true
	}
	if err := db.writeReserve(); err != nil {
		return true
	}
	db.spaceBackLocked("free space")
	return false
}

// alarmLocked raises the full-disk alarm (once) and deletes the reserve.
func (db *DB) alarmLocked(err error) {
	if db.disk.full {
		return
	}
	db.disk.full = true
	rmErr := os.Remove(db.reservePath())
	db.log.Error("ALARM outbox disk full: new events are refused until space returns; events already stored are kept and sent",
		"dir", filepath.Dir(db.path), "outbox_depth", db.Depth(), "err", err, "reserve_released", rmErr == nil)
}

// checkInsert classifies the outcome of an outbox insert: a full disk
// becomes ErrDiskFull (the first one logs the alarm), a row-limit refusal
// is counted, and a stored row clears the alarm.
func (db *DB) checkInsert(r row, stored bool, err error) error {
	db.disk.mu.Lock()
	defer db.disk.mu.Unlock()
	switch {
	case err != nil && isDiskFull(err):
		db.disk.refused[RefusedDiskFull]++
		db.alarmLocked(err)
		return fmt.Errorf("%w: %s %s not stored: %w", ErrDiskFull, r.kind, r.id, err)
	case errors.Is(err, ErrOutboxFull):
		db.disk.refused[RefusedOutboxFull]++
	case err == nil && stored:
		db.spaceBackLocked("write succeeded")
	}
	return err
}

func (db *DB) spaceBackLocked(why string) {
	if !db.disk.full {
		return
	}
	db.disk.full = false
	db.log.Warn("outbox disk space back: recording resumed", "why", why, "dir", filepath.Dir(db.path),
		"refused_total", db.disk.refused[RefusedDiskFull])
}

// DiskFull reports whether the store refuses messages for a full disk:
// true from the first refusal until the filesystem has room again
// (ResumeFreeBytes beyond the reserve) or a write succeeds.
func (db *DB) DiskFull() bool {
	db.disk.mu.Lock()
	defer db.disk.mu.Unlock()
	return db.refuseLocked()
}

// refuseEarly is ErrDiskFull for r when the disk is still full, counted;
// nil when r may be tried.
func (db *DB) refuseEarly(r row) error {
	db.disk.mu.Lock()
	defer db.disk.mu.Unlock()
	if !db.refuseLocked() {
		return nil
	}
	db.disk.refused[RefusedDiskFull]++
	return fmt.Errorf("%w: %s %s not stored (space has not returned)", ErrDiskFull, r.kind, r.id)
}

// Refused returns how many messages were refused since Open, by reason
// (RefusedDiskFull, RefusedOutboxFull).
func (db *DB) Refused() map[string]int64 {
	db.disk.mu.Lock()
	defer db.disk.mu.Unlock()
	return map[string]int64{RefusedDiskFull: db.disk.refused[RefusedDiskFull], RefusedOutboxFull: db.disk.refused[RefusedOutboxFull]}
}
