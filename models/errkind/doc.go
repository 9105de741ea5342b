// Package errkind is the typed error of the face engine and the decoders
// (images, descriptors, galleries): a Kind that callers can react to
// without matching strings, for example to map it to an HTTP status. It is
// pure Go, so code that only classifies these errors does not link the
// engine.
package errkind
