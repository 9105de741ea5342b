// Package archcheck holds the architecture tests: which packages may link
// the cgo face engine and which may import a test harness
// (archcheck_test.go), that only hub/roster writes the roster tables
// (tableowner_test.go), and that only hub/facereview writes its tables and
// the city sync never reads them (reviewtables_test.go). It has no code of
// its own.
package archcheck
