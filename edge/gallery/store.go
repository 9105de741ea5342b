// Package gallery holds the gate's face gallery: the enrolled pupils'
// descriptors the recogniser matches against.
//
// The Store keeps the gallery on disk (written atomically) and in memory
// behind an atomic pointer, so the gate works after a reboot without its
// hub and a new gallery replaces the old one between two matches, never
// during one. The Sync worker fetches new versions from the hub over HTTP
// with an ETag, on a timer and whenever the hub's retained MQTT
// announcement says a new version exists; when the hub is down the gate
// keeps its last gallery.
package gallery

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
)

type snapshot struct {
	doc *wire.GalleryDoc
	g   *match.Gallery
}

// Store is the gate's current face gallery: in memory for the matcher and
// in one file on disk for the next start (not a database; the gate's
// SQLite file is edge/store.DB). Safe for concurrent use.
type Store struct {
	path string
	log  *slog.Logger
	cur  atomic.Pointer[snapshot]
	wmu  sync.Mutex // serialises Replace
	subs []func(*wire.GalleryDoc, *match.Gallery)
	// model, once Expect sets it, is the only model a non-empty gallery
	// may be for (guarded by wmu).
	model match.ModelID
}

// NewStore loads the gallery file at path. A missing file gives an empty
// gallery (version 0) and a warning: the gate starts and recognises nobody
// until a gallery arrives. A file that exists but does not decode is an
// error naming the bad field, never silently ignored.
func NewStore(path string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if path == "" {
		return nil, conf.Fieldf("gallery.path", "is required")
	}
	s := &Store{path: path, log: log}
	doc, g, err := wire.LoadGalleryFile(path)
	switch {
	case err == nil:
		s.cur.Store(&snapshot{doc, g})
		log.Info("gallery loaded", "path", path, "version", doc.Version, "people", g.People(), "descriptors", g.Len(), "model", g.Model.String())
	case errors.Is(err, os.ErrNotExist):
		s.cur.Store(empty())
		log.Warn("no gallery file yet; recognising nobody until one arrives", "path", path)
	default:
		return nil, fmt.Errorf("gallery %s: %w", path, err)
	}
	return s, nil
}

func empty() *snapshot {
	return &snapshot{
		doc: &wire.GalleryDoc{Format: wire.GalleryFormat, Model: match.DefaultEmbedder},
		g:   match.NewGallery(0, match.DefaultEmbedder),
	}
}

// Path is the gallery file.
func (s *Store) Path() string { return s.path }

// Current returns the gallery in force (never nil). Both values are
// immutable; a caller keeps using the pair it got even if a new gallery
// is swapped in meanwhile.
func (s *Store) Current() (*wire.GalleryDoc, *match.Gallery) {
	c := s.cur.Load()
	return c.doc, c.g
}

// Version is the current gallery version (0 when none).
func (s *Store) Version() int64 { return s.cur.Load().doc.Version }

// OnChange registers f to be called after each successful Replace (for
// metrics or logging). Register before starting workers.
func (s *Store) OnChange(f func(*wire.GalleryDoc, *match.Gallery)) { s.subs = append(s.subs, f) }

// Expect makes the store hold galleries of model m only (the gate
// engine's): the gallery already loaded, when not empty, must be for m, and
// Replace refuses a non-empty gallery of any other model from then on,
// even when the current gallery is empty. Two custom models differ in
// their ID's version (it carries their file's checksum), so a gallery of
// one is refused by a gate running another.
func (s *Store) Expect(m match.ModelID) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.model = m
	if g := s.cur.Load().g; g.Len() > 0 && g.Model != m {
		return conf.Fieldf("model", "gallery %s holds %s templates but the engine runs %s", s.path, g.Model, m)
	}
	return nil
}

// Replace validates doc, writes it to disk atomically and swaps it in.
// On any error the current gallery and the file are left as they were.
func (s *Store) Replace(doc *wire.GalleryDoc) error {
	b, err := doc.Encode()
	if err != nil {
		return err
	}
	return s.ReplaceBytes(b)
}

// ReplaceBytes is Replace for an encoded document (as served by the hub).
func (s *Store) ReplaceBytes(b []byte) error {
	doc, g, err := wire.DecodeGallery(b)
	if err != nil {
		return fmt.Errorf("gallery: %w", err)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	old := s.cur.Load()
	if s.model != (match.ModelID{}) && g.Len() > 0 && g.Model != s.model {
		return conf.Fieldf("model", "gallery is for %s, the gate runs %s", g.Model, s.model)
	}
	if old.g.Len() > 0 && g.Len() > 0 && g.Model != old.g.Model {
		return conf.Fieldf("model", "gallery is for %s, the gate runs %s", g.Model, old.g.Model)
	}
	if err := conf.WriteFileAtomic(s.path, b, 0o600); err != nil {
		return fmt.Errorf("gallery: %w", err)
	}
	s.cur.Store(&snapshot{doc, g})
	s.log.Info("gallery replaced", "old_version", old.doc.Version, "version", doc.Version, "people", g.People(), "descriptors", g.Len())
	for _, f := range s.subs {
		f(doc, g)
	}
	return nil
}
