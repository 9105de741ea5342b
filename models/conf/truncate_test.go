package conf

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTruncate(t *testing.T) {
	cases := []struct {
		name, s  string
		max      int
		unit     Unit
		ellipsis string
		want     string
	}{
		{name: "short bytes", s: "abc", max: 3, unit: Bytes, want: "abc"},
		{name: "empty", s: "", max: 0, unit: Bytes, ellipsis: "…", want: ""},
		{name: "ascii cut", s: "abcdef", max: 4, unit: Bytes, want: "abcd"},
		{name: "ascii cut with ellipsis", s: "abcdef", max: 4, unit: Bytes, ellipsis: "…", want: "abcd…"},
		{name: "never inside a rune", s: "aế", max: 3, unit: Bytes, want: "a"}, // ế is 3 bytes
		{name: "rune fits exactly", s: "aếb", max: 4, unit: Bytes, want: "aế"},
		{name: "two-byte rune at the edge", s: "xđy", max: 2, unit: Bytes, ellipsis: "…", want: "x…"},
		{name: "runes short", s: "Nguyễn", max: 6, unit: Runes, ellipsis: "…", want: "Nguyễn"},
		{name: "runes cut", s: "Nguyễn Văn An", max: 6, unit: Runes, ellipsis: "…", want: "Nguyễn…"},
		{name: "bytes of the same text", s: "Nguyễn Văn An", max: 6, unit: Bytes, ellipsis: "…", want: "Nguy…"},
		{name: "invalid bytes count one each", s: "a\xff\xfebc", max: 3, unit: Runes, want: "a\xff\xfe"},
		{name: "zero max", s: "a", max: 0, unit: Runes, ellipsis: "…", want: "…"},
		{name: "emoji", s: "🙂🙂🙂", max: 9, unit: Bytes, want: "🙂🙂"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Truncate(tc.s, tc.max, tc.unit, tc.ellipsis)
			if got != tc.want {
				t.Fatalf("Truncate(%q, %d) = %q, want %q", tc.s, tc.max, got, tc.want)
			}
			if utf8.ValidString(tc.s) && !utf8.ValidString(got) {
				t.Fatalf("cut inside a rune: %q", got)
			}
		})
	}
}

// TestTruncateProperties: for every limit, the result is a prefix of s
// (plus the ellipsis when cut), within the limit, valid UTF-8 when s is,
// and as long as possible.
func TestTruncateProperties(t *testing.T) {
	inputs := []string{"", "abc", "Nguyễn Văn An", "a\xffb\xc3", "🙂x🙂", "đường Lê Lợi, phường Bến Thành"}
	for _, s := range inputs {
		for max := 0; max <= len(s)+1; max++ {
			for _, unit := range []Unit{Bytes, Runes} {
				checkTruncate(t, s, max, unit)
			}
		}
	}
}

func checkTruncate(t *testing.T, s string, max int, unit Unit) {
	t.Helper()
	length := func(x string) int { return len(x) }
	if unit == Runes {
		length = utf8.RuneCountInString
	}
	got := Truncate(s, max, unit, "…")
	if length(s) <= max {
		if got != s {
			t.Fatalf("%q shortened to %q", s, got)
		}
		return
	}
	head, ok := strings.CutSuffix(got, "…")
	if !ok || !strings.HasPrefix(s, head) || length(head) > max {
		t.Fatalf("Truncate(%q, %d, %v) = %q", s, max, unit, got)
	}
	if utf8.ValidString(s) && !utf8.ValidString(head) {
		t.Fatalf("cut inside a rune: %q", head)
	}
	if _, w := utf8.DecodeRuneInString(s[len(head):]); length(s[:len(head)+w]) <= max {
		t.Fatalf("Truncate(%q, %d, %v) = %q: the next rune fits", s, max, unit, got)
	}
}
