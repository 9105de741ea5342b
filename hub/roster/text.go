package roster

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// NormalizeText is applied to every human-entered text the roster stores
// (names of schools, classes, pupils, guardians, staff and gates, a
// district, a guardian's relation) on the way in, from the JSON API and the
// CSV import alike: white space around it is trimmed and it is put in
// Unicode NFC. A name typed or pasted in decomposed form (NFD: base letters
// followed by combining marks, as macOS and some Vietnamese input methods
// produce it) is then stored byte for byte like the same name composed, so
// the two compare, sort, search and de-duplicate as equal. Invalid UTF-8 is
// returned trimmed but otherwise unchanged, for validation to refuse.
func NormalizeText(s string) string {
	s = strings.TrimSpace(s)
	if !utf8.ValidString(s) || norm.NFC.IsNormalString(s) {
		return s
	}
	return norm.NFC.String(s)
}

// NameKey is what names are matched by (a class named in a CSV file, a CSV
// guardian against the pupil's stored guardians): NFC, lower case, runs of
// white space as one space. Diacritics are kept: in Vietnamese they tell
// names apart ("Hà" is not "Hạ").
func NameKey(s string) string {
	return strings.Join(strings.Fields(NormalizeText(strings.ToLower(NormalizeText(s)))), " ")
}

// EncodingError is an uploaded file that is not text in an encoding the
// importers read; Line is the first line concerned.
type EncodingError struct {
	Line   int
	Reason string
}

func (e *EncodingError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Reason) }

const saveAsUTF8 = `save it from Excel as "CSV UTF-8 (Comma delimited)" or as "Unicode Text" / hãy lưu tệp dạng "CSV UTF-8"`

// DecodeText returns an uploaded spreadsheet file as UTF-8 text. It reads
// UTF-8 (a byte-order mark is dropped) and UTF-16 little- or big-endian
// with a byte-order mark (Excel's "Unicode Text"). Anything else is refused
// with an *EncodingError that names the problem and the first line
// concerned rather than imported as mojibake: bytes that are not UTF-8 (a
// legacy Vietnamese encoding such as Windows-1258, TCVN3/ABC or VNI), NUL
// bytes (UTF-16 without a byte-order mark), UTF-32, a UTF-16 file with an
// odd number of bytes or a broken surrogate pair.
func DecodeText(b []byte) ([]byte, error) {
	switch {
	case bytes.HasPrefix(b, []byte{0xFF, 0xFE, 0, 0}), bytes.HasPrefix(b, []byte{0, 0, 0xFE, 0xFF}):
		return nil, &EncodingError{1, "the file is UTF-32, which is not supported; " + saveAsUTF8}
	case bytes.HasPrefix(b, []byte{0xFF, 0xFE}):
		return decodeUTF16(b[2:], func(p []byte) uint16 { return uint16(p[0]) | uint16(p[1])<<8 })
	case bytes.HasPrefix(b, []byte{0xFE, 0xFF}):
		return decodeUTF16(b[2:], func(p []byte) uint16 { return uint16(p[0])<<8 | uint16(p[1]) })
	}
	b = bytes.TrimPrefix(b, []byte("\xEF\xBB\xBF"))
	first, bad := 0, 0
	line, lineBad := 1, false
	for i := 0; i < len(b); {
		c := b[i]
		if c == 0 {
			return nil, &EncodingError{line, "the file contains NUL bytes: it is probably UTF-16 without a byte-order mark; " + saveAsUTF8}
		}
		n := 1
		if c >= utf8.RuneSelf {
			var r rune
			r, n = utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n == 1 && !lineBad {
				lineBad = true
				bad++
				if first == 0 {
					first = line
				}
			}
		}
		if c == '\n' {
			line++
			lineBad = false
		}
		i += n
	}
	if bad > 0 {
		return nil, &EncodingError{first, fmt.Sprintf("the file is not UTF-8 text (line %d is the first of %d line(s) with bytes that are not UTF-8): "+
			"it is probably in a legacy Vietnamese encoding such as Windows-1258, TCVN3 (ABC) or VNI; %s", first, bad, saveAsUTF8)}
	}
	return b, nil
}

func decodeUTF16(b []byte, unit func([]byte) uint16) ([]byte, error) {
	out := make([]byte, 0, len(b))
	line := 1
	for i := 0; i+1 < len(b); i += 2 {
		r := rune(unit(b[i:]))
		if utf16.IsSurrogate(r) {
			var r2 rune = utf8.RuneError
			if i+3 < len(b) {
				r2 = rune(unit(b[i+2:]))
			}
			if r = utf16.DecodeRune(r, r2); r == utf8.RuneError {
				return nil, &EncodingError{line, "the UTF-16 file has a broken surrogate pair (damaged file?); " + saveAsUTF8}
			}
			i += 2
		}
		if r == 0 {
			return nil, &EncodingError{line, "the UTF-16 file contains a NUL character (damaged file?); " + saveAsUTF8}
		}
		if r == '\n' {
			line++
		}
		out = utf8.AppendRune(out, r)
	}
	if len(b)%2 != 0 {
		return nil, &EncodingError{line, "the UTF-16 file has an odd number of bytes (cut off?); " + saveAsUTF8}
	}
	return out, nil
}

// SniffComma returns the field separator of CSV text from its first line:
// the most frequent of ',', ';' (Excel in a Vietnamese locale) and tab
// (Excel's "Unicode Text") outside quotes; ',' when there is none.
func SniffComma(text []byte) rune {
	count := map[byte]int{}
	quoted := false
	for _, c := range text {
		if c == '\n' && !quoted {
			break
		}
		switch {
		case c == '"':
			quoted = !quoted
		case !quoted && (c == ',' || c == ';' || c == '\t'):
			count[c]++
		}
	}
	best := byte(',')
	for _, c := range []byte{';', '\t'} {
		if count[c] > count[best] {
			best = c
		}
	}
	return rune(best)
}
