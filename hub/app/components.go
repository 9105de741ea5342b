package app

import (
	"path/filepath"

	"github.com/diemdanh/diemdanh/hub/attendance"
	"github.com/diemdanh/diemdanh/hub/backup"
	"github.com/diemdanh/diemdanh/hub/facereview"
	"github.com/diemdanh/diemdanh/hub/facetemplates"
	"github.com/diemdanh/diemdanh/hub/gallerysrv"
	"github.com/diemdanh/diemdanh/hub/learn"

	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/auth"
	"github.com/diemdanh/diemdanh/hub/enrol"

	"github.com/diemdanh/diemdanh/hub/notify"

	"github.com/diemdanh/diemdanh/hub/broker"
	"github.com/diemdanh/diemdanh/hub/citysync"
	"github.com/diemdanh/diemdanh/hub/ingest"
	"github.com/diemdanh/diemdanh/hub/web"
)

// Components holds the per-component config sections. Other helpers add
// their section here: a field, its default in defaultComponents and its
// check in validate (small additive edits).
type Components struct {
	Attendance attendance.Config     `yaml:"attendance"`
	Gallery    gallerysrv.Config     `yaml:"gallery"`
	Backup     backup.Config         `yaml:"backup"`
	Templates  facetemplates.Config  `yaml:"templates"`
	Auth       auth.Config           `yaml:"auth"`
	Enrol      enrol.Config          `yaml:"enrol"`
	Audit      audit.Config          `yaml:"audit"`
	Web        web.Config            `yaml:"web"`    // pages
	Notify     notify.Config         `yaml:"notify"` // notifications
	Broker     broker.Config         `yaml:"broker"` // MQTT (embedded or external)
	Ingest     ingest.Config         `yaml:"ingest"` // event validation and group commit
	CitySync   citysync.Config       `yaml:"city_sync"`
	Review     facereview.Config     `yaml:"review"`              // unrecognised faces: retention and purge
	Automatic  learn.AutomaticConfig `yaml:"automatic_templates"` // gate templates the gates offer
}

func defaultComponents() Components {
	return Components{
		Attendance: attendance.Default(),
		Gallery:    gallerysrv.Default(),
		Backup:     backup.Default(),
		Templates:  facetemplates.Config{}, // key file defaults to <data_dir>/template.key
		Auth:       auth.DefaultConfig(),
		Enrol:      enrol.DefaultConfig(),
		Audit:      audit.DefaultConfig(),
		Web:        web.Default(),
		Notify:     notify.Default(),
		Broker:     broker.Default(),
		Ingest:     ingest.Default(),
		CitySync:   citysync.Default(),
		Review:     facereview.Default(),
		Automatic:  learn.DefaultAutomaticConfig(),
	}
}

func (c Components) validate() error {
	if err := c.Broker.Validate("broker"); err != nil {
		return err
	}
	if err := c.Ingest.Validate("ingest"); err != nil {
		return err
	}
	if err := c.Web.Validate("web."); err != nil {
		return err
	}
	if err := c.Notify.Validate("notify."); err != nil {
		return err
	}
	if err := c.Auth.Validate("auth"); err != nil {
		return err
	}
	if err := c.Enrol.Validate("enrol"); err != nil {
		return err
	}
	if err := c.Audit.Validate("audit"); err != nil {
		return err
	}
	if err := c.Attendance.Validate("attendance"); err != nil {
		return err
	}
	if err := c.Gallery.Validate("gallery"); err != nil {
		return err
	}
	if err := c.Backup.Validate("backup"); err != nil {
		return err
	}
	if err := c.CitySync.Validate("city_sync"); err != nil {
		return err
	}
	if err := c.Review.Validate("review"); err != nil {
		return err
	}
	if err := c.Automatic.Validate("automatic_templates"); err != nil {
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
