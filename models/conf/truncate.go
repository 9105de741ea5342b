package conf

import "unicode/utf8"

// Unit is what a Truncate limit counts.
type Unit int

const (
	// Bytes limits the encoded length (a database column, a log field).
	Bytes Unit = iota
	// Runes limits the characters a person reads (a value quoted in a
	// message).
	Runes
)

// Truncate returns s when it is at most max long (in unit); otherwise its
// longest prefix of at most max that ends on a rune boundary, followed by
// ellipsis ("" for none; the ellipsis is not counted in max). It never
// cuts inside a UTF-8 sequence; an invalid byte counts as one rune.
func Truncate(s string, max int, unit Unit, ellipsis string) string {
	if unit == Bytes && len(s) <= max {
		return s
	}
	used := 0
	for i := 0; i < len(s); {
		_, w := utf8.DecodeRuneInString(s[i:])
		step := w
		if unit == Runes {
			step = 1
		}
		if used+step > max {
			return s[:i] + ellipsis
		}
		used += step
		i += w
	}
	return s
}
