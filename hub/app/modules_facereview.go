package app

import (
	"fmt"

	"github.com/diemdanh/diemdanh/hub/facereview"
)

// buildFaceReview wires the store of unrecognised faces: sealed with the
// template key, fed by ingest (buildMQTT registers it for the
// unrecognised topic) and purged after review.retention by its worker. It
// needs the audit log (buildEnrol).
func (a *App) buildFaceReview(key []byte) error {
	st, err := facereview.New(a.DB, key, a.Mods.Audit, a.Cfg.Review, a.Log.With("component", "facereview"), a.Now)
	if err != nil {
		return fmt.Errorf("app: %w", err)
	}
	a.Mods.FaceReview = st
	a.Go("facereview-purge", st.Run)
	return nil
}
