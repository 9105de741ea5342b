// Package doccheck checks the project's documentation.
package doccheck
