package app

import (
	"context"
)

// Modules holds every component the hub runs. Helpers add a field for
// their component here and its construction in buildModules (small,
// additive edits; keep the order: data first, then producers, then
// consumers).
type Modules struct {
}

// buildModules constructs and wires the components. Each component:
//   - gets a.DB, a.Log, a.Now and its own section of a.Cfg;
//   - registers routes on a.API.V1 (JSON API) or a.API.Engine (pages) and
//     its OpenAPI paths with a.API.AddPaths;
//   - registers background loops with a.Go and shutdown steps with
//     a.OnStop(phase, …).
func (a *App) buildModules(ctx context.Context) error {
	_ = ctx
	return nil
}
