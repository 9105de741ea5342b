package app

// Components holds the per-component config sections. Other helpers add
// their section here: a field, its default in defaultComponents and its
// check in validate (small additive edits).
type Components struct {
}

func defaultComponents() Components {
	return Components{}
}

func (c Components) validate() error {
	return nil
}
