package web

import (
	"fmt"
	"html/template"
	"io/fs"
	"path"
	"strings"
)

func (s *Server) parseTemplates() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"statuses": func() []string { return Statuses },
		"missing":  missing,
		"list":     func(xs ...string) []string { return xs },
		"inc":      func(i int) int { return i + 1 },
		"add":      func(a, b int) int { return a + b },
		// date shows an ISO day to people (dd/mm/yyyy): {{date .Lang $day}}.
		"date":     FormatDate,
		"dateHint": func() string { return DateHint },
		"addDays":  addDays,
		"pct": func(n, d int) string {
			if d == 0 {
				return "–"
			}
			return fmt.Sprintf("%.0f%%", 100*float64(n)/float64(d))
		},
	}
	base, err := template.New("base.html").Funcs(funcs).ParseFS(templatesFS, "templates/base.html")
	if err != nil {
		return nil, fmt.Errorf("web: templates: %w", err)
	}
	ents, err := fs.ReadDir(templatesFS, "templates")
	if err != nil {
		return nil, fmt.Errorf("web: templates: %w", err)
	}
	out := map[string]*template.Template{}
	for _, e := range ents {
		if e.Name() == "base.html" {
			continue
		}
		t, err := template.Must(base.Clone()).ParseFS(templatesFS, "templates/"+e.Name())
		if err != nil {
			return nil, fmt.Errorf("web: templates: %w", err)
		}
		out[strings.TrimSuffix(e.Name(), path.Ext(e.Name()))] = t
	}
	return out, nil
}
