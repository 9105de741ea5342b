package app

import (
	"path/filepath"

	"github.com/diemdanh/diemdanh/hub/attendance"
	"github.com/diemdanh/diemdanh/hub/backup"
	"github.com/diemdanh/diemdanh/hub/gallerysrv"
	"github.com/diemdanh/diemdanh/hub/templates"
)

// Components holds the per-component config sections. Other helpers add
// their section here: a field, its default in defaultComponents and its
// check in validate (small additive edits).
type Components struct {
	Attendance attendance.Config `yaml:"attendance"`
	Gallery    gallerysrv.Config `yaml:"gallery"`
	Backup     backup.Config     `yaml:"backup"`
	Templates  templates.Config  `yaml:"templates"`
}

func defaultComponents() Components {
	return Components{
		Attendance: attendance.Default(),
		Gallery:    gallerysrv.Default(),
		Backup:     backup.Default(),
		Templates:  templates.Config{}, // key file defaults to <data_dir>/template.key
	}
}

func (c Components) validate() error {
	if err := c.Attendance.Validate("attendance"); err != nil {
		return err
	}
	if err := c.Gallery.Validate("gallery"); err != nil {
		return err
	}
	if err := c.Backup.Validate("backup"); err != nil {
		return err
	}
	return nil
}

// resolvePaths fills paths that default to places under DataDir.
func (c *Config) resolvePaths() {
	if c.Backup.Dir == "" {
		c.Backup.Dir = filepath.Join(c.DataDir, "backups")
	}
	if c.Templates.KeyFile == "" {
		c.Templates.KeyFile = filepath.Join(c.DataDir, "template.key")
	}
}
