// Package imagecheck reads the header of an encoded image (JPEG, PNG, BMP,
// GIF, WebP), enforces size limits and checks that the file is complete,
// without decoding pixels. Every decoding path of the face engine starts
// here, and the event contract uses it to check face crops; it is pure Go.
package imagecheck
