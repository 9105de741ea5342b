package api

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/gin-gonic/gin"
)

//go:embed openapi.json
var baseSpec []byte

// AddPaths merges an OpenAPI 3 "paths" object (JSON) into the served
// document. Components call it next to registering their routes, so the
// document lists every route (TestOpenAPICoversRoutes checks it).
func (s *Server) AddPaths(pathsJSON []byte) error {
	var paths map[string]any
	if err := json.Unmarshal(pathsJSON, &paths); err != nil {
		return fmt.Errorf("api: openapi paths: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for p, ops := range paths {
		m, _ := ops.(map[string]any)
		cur, _ := s.spec[p].(map[string]any)
		if cur == nil {
			cur = map[string]any{}
		}
		for k, v := range m {
			cur[k] = v
		}
		s.spec[p] = cur
	}
	return nil
}

// Spec returns the assembled OpenAPI document.
func (s *Server) Spec() (map[string]any, error) {
	var doc map[string]any
	if err := json.Unmarshal(baseSpec, &doc); err != nil {
		return nil, fmt.Errorf("api: openapi base: %w", err)
	}
	paths, _ := doc["paths"].(map[string]any)
	if paths == nil {
		paths = map[string]any{}
		doc["paths"] = paths
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for p, ops := range s.spec {
		cur, _ := paths[p].(map[string]any)
		if cur == nil {
			cur = map[string]any{}
		}
		for k, v := range ops.(map[string]any) {
			cur[k] = v
		}
		paths[p] = cur
	}
	return doc, nil
}

func (s *Server) openapi(c *gin.Context) {
	doc, err := s.Spec()
	if err != nil {
		Fail(c, err)
		return
	}
	c.JSON(http.StatusOK, doc)
}

// GinPath converts an OpenAPI path (/pupils/{id}) to gin's (/pupils/:id).
func GinPath(p string) string {
	parts := strings.Split(p, "/")
	for i, x := range parts {
		if strings.HasPrefix(x, "{") && strings.HasSuffix(x, "}") {
			parts[i] = ":" + x[1:len(x)-1]
		}
	}
	return strings.Join(parts, "/")
}

// MissingFromSpec lists "METHOD path" of every route served by the engine
// that the OpenAPI document does not describe (the document's servers
// entry is /api/v1; /healthz and /metrics are listed with full paths).
// Routes outside /api/v1 other than /healthz and /metrics (web pages) are
// not API routes and are ignored.
func (s *Server) MissingFromSpec() ([]string, error) {
	doc, err := s.Spec()
	if err != nil {
		return nil, err
	}
	have := map[string]bool{}
	for p, ops := range doc["paths"].(map[string]any) {
		full := p
		if p != "/healthz" && p != "/metrics" {
			full = Prefix + p
		}
		for m := range ops.(map[string]any) {
			have[strings.ToUpper(m)+" "+GinPath(full)] = true
		}
	}
	var missing []string
	for _, r := range s.Engine.Routes() {
		if !strings.HasPrefix(r.Path, Prefix+"/") && r.Path != "/healthz" && r.Path != "/metrics" {
			continue
		}
		if r.Method == http.MethodHead || r.Method == http.MethodOptions {
			continue
		}
		if !have[r.Method+" "+r.Path] {
			missing = append(missing, r.Method+" "+r.Path)
		}
	}
	sort.Strings(missing)
	return missing, nil
}
