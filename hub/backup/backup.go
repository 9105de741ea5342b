// Package backup makes nightly online backups of the hub's SQLite database
// with SQLite's backup API (through mattn/go-sqlite3's SQLiteConn.Backup),
// which copies a consistent snapshot while the hub keeps running, into a
// configurable folder, keeping the newest N.
package backup

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/mattn/go-sqlite3"
)

// Config of the nightly backup.
type Config struct {
	Enabled bool   `yaml:"enabled"`
	Dir     string `yaml:"dir"`  // default <data_dir>/backups
	Keep    int    `yaml:"keep"` // newest backups kept
	At      string `yaml:"at"`   // local time of day, HH:MM
}

// Default returns the defaults.
func Default() Config { return Config{Enabled: true, Keep: 7, At: "02:30"} }

// Validate checks the config.
func (c Config) Validate(prefix string) error {
	if !c.Enabled {
		return nil
	}
	if c.Keep < 1 || c.Keep > 365 {
		return conf.Fieldf(prefix+".keep", "must be 1..365, got %d", c.Keep)
	}
	if _, err := time.Parse("15:04", c.At); err != nil || len(c.At) != 5 {
		return conf.Fieldf(prefix+".at", "must be HH:MM, got %q", c.At)
	}
	return nil
}

// Backuper runs backups of one database.
type Backuper struct {
	db  *store.DB
	cfg Config
	log *slog.Logger
	now func() time.Time
}

// New returns a Backuper writing into cfg.Dir.
func New(db *store.DB, cfg Config, log *slog.Logger, now func() time.Time) *Backuper {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	return &Backuper{db: db, cfg: cfg, log: log, now: now}
}

const prefix, suffix = "hub-", ".db"

// BackupNow writes a consistent copy of the live database to
// Dir/hub-YYYYMMDD-HHMMSS.db (through a temporary file and rename), prunes
// old ones and returns the path.
func (b *Backuper) BackupNow(ctx context.Context) (string, error) {
	if err := os.MkdirAll(b.cfg.Dir, 0o750); err != nil {
		return "", fmt.Errorf("backup: %w", err)
	}
	name := prefix + b.now().Format("20060102-150405") + suffix
	final := filepath.Join(b.cfg.Dir, name)
	tmp := final + ".tmp"
	_ = os.Remove(tmp)
	if err := b.copyTo(ctx, tmp); err != nil {
		_ = os.Remove(tmp)
		return "", err
	}
	if err := os.Rename(tmp, final); err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("backup: %w", err)
	}
	if d, err := os.Open(b.cfg.Dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	if err := b.prune(); err != nil {
		b.log.Warn("backup prune failed", "err", err)
	}
	return final, nil
}

func (b *Backuper) copyTo(ctx context.Context, path string) error {
	dst, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=DELETE")
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer dst.Close()
	dc, err := dst.Conn(ctx)
	if err != nil {
		return fmt.Errorf("backup: open %s: %w", path, err)
	}
	defer dc.Close()
	sc, err := b.db.R.Conn(ctx)
	if err != nil {
		return fmt.Errorf("backup: source: %w", err)
	}
	defer sc.Close()
	return dc.Raw(func(d any) error {
		dconn, ok := d.(*sqlite3.SQLiteConn)
		if !ok {
			return errors.New("backup: destination is not a go-sqlite3 connection")
		}
		return sc.Raw(func(s any) error {
			sconn, ok := s.(*sqlite3.SQLiteConn)
			if !ok {
				return errors.New("backup: source is not a go-sqlite3 connection")
			}
			bk, err := dconn.Backup("main", sconn, "main")
			if err != nil {
				return fmt.Errorf("backup: init: %w", err)
			}
			for {
				done, err := bk.Step(256)
				if err != nil {
					_ = bk.Finish()
					return fmt.Errorf("backup: step: %w", err)
				}
				if done {
					break
				}
				if ctx.Err() != nil {
					_ = bk.Finish()
					return ctx.Err()
				}
			}
			if err := bk.Finish(); err != nil {
				return fmt.Errorf("backup: finish: %w", err)
			}
			return nil
		})
	})
}

// List returns the backups in Dir, newest first.
func (b *Backuper) List() ([]string, error) {
	ents, err := os.ReadDir(b.cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	var out []string
	for _, e := range ents {
		if n := e.Name(); strings.HasPrefix(n, prefix) && strings.HasSuffix(n, suffix) {
			out = append(out, filepath.Join(b.cfg.Dir, n))
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(out)))
	return out, nil
}

func (b *Backuper) prune() error {
	all, err := b.List()
	if err != nil {
		return err
	}
	for i := b.cfg.Keep; i < len(all); i++ {
		if err := os.Remove(all[i]); err != nil {
			return fmt.Errorf("backup: prune: %w", err)
		}
		b.log.Info("old backup removed", "path", all[i])
	}
	return nil
}

// Next returns the next run time after t (today's or tomorrow's At, local).
func (b *Backuper) Next(t time.Time) time.Time {
	hm, _ := time.Parse("15:04", b.cfg.At)
	n := time.Date(t.Year(), t.Month(), t.Day(), hm.Hour(), hm.Minute(), 0, 0, t.Location())
	if !n.After(t) {
		n = n.AddDate(0, 0, 1)
	}
	return n
}

// Run backs up every night at At until ctx ends; a failure is logged and
// retried after an hour (capped at the next nightly run).
func (b *Backuper) Run(ctx context.Context) error {
	if !b.cfg.Enabled {
		<-ctx.Done()
		return nil
	}
	next := b.Next(b.now())
	for {
		timer := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
		p, err := b.BackupNow(ctx)
		if err != nil {
			b.log.Error("nightly backup failed", "err", err)
			next = b.now().Add(time.Hour)
			if n := b.Next(b.now()); n.Before(next) {
				next = n
			}
			continue
		}
		b.log.Info("nightly backup written", "path", p)
		next = b.Next(b.now())
	}
}
