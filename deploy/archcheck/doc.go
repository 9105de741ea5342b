// Package archcheck holds the architecture test (archcheck_test.go): which
// packages may link the cgo face engine. It has no code of its own.
package archcheck
