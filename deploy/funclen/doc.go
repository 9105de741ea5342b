// Package funclen holds a test that keeps every function of the module
// (outside tests) at most MaxLines lines long.
package funclen
