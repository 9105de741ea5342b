// Package conf holds the conventions both binaries (bin/edge and bin/hub)
// follow for configuration: strict YAML decoding, errors that name the bad
// field (FieldError), environment overrides, the logger, the models and
// test data folders, atomic file writes and Truncate (bounded strings for
// columns and messages). It is pure Go.
package conf
