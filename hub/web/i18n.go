package web

import (
	"embed"
	"encoding/json"
	"fmt"
	"sort"
)

//go:embed i18n/*.json
var i18nFS embed.FS

// Langs are the UI languages, the default first.
var Langs = []string{"vi", "en"}

// Catalogue holds every UI string per language (i18n/<lang>.json).
type Catalogue struct {
	m map[string]map[string]string
}

// LoadCatalogue reads the embedded catalogues and checks that every
// language has exactly the keys of Vietnamese.
func LoadCatalogue() (*Catalogue, error) {
	c := &Catalogue{m: map[string]map[string]string{}}
	for _, l := range Langs {
		b, err := i18nFS.ReadFile("i18n/" + l + ".json")
		if err != nil {
			return nil, fmt.Errorf("web: i18n: %w", err)
		}
		var m map[string]string
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("web: i18n/%s.json: %w", l, err)
		}
		c.m[l] = m
	}
	var missing []string
	for k := range c.m["vi"] {
		for _, l := range Langs[1:] {
			if _, ok := c.m[l][k]; !ok {
				missing = append(missing, l+":"+k)
			}
		}
	}
	for _, l := range Langs[1:] {
		for k := range c.m[l] {
			if _, ok := c.m["vi"][k]; !ok {
				missing = append(missing, "vi:"+k)
			}
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, fmt.Errorf("web: i18n keys missing: %v", missing)
	}
	return c, nil
}

// T returns the string of key in lang (the key itself when unknown, so a
// missing string is visible rather than blank).
func (c *Catalogue) T(lang, key string) string {
	if s, ok := c.m[lang][key]; ok {
		return s
	}
	if s, ok := c.m["vi"][key]; ok {
		return s
	}
	return key
}

// Keys returns the catalogue of lang (for tests).
func (c *Catalogue) Keys(lang string) map[string]string { return c.m[lang] }
