package doccheck

import (
	"bytes"
	"errors"
	"fmt"
	"image/png"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"unicode"
)

// Limits the documentation must keep.
const (
	readmeMaxBytes     = 12288 // README.md, the page for people meeting the project
	screenshotPath     = "deploy/board.png"
	screenshotMaxBytes = 200_000 // the README's screenshot
)

// checker finds broken relative links in Markdown files of one repository.
// Paths are slash-separated and relative to the repository root.
type checker struct {
	tracked map[string]bool // files in the git index
	dirs    map[string]bool // folders holding at least one tracked file
	read    func(name string) ([]byte, error)
	anchors map[string]map[string]bool
}

func newChecker(files []string, read func(string) ([]byte, error)) *checker {
	c := &checker{tracked: map[string]bool{}, dirs: map[string]bool{}, read: read, anchors: map[string]map[string]bool{}}
	for _, f := range files {
		c.tracked[f] = true
		for d := path.Dir(f); d != "." && d != "/"; d = path.Dir(d) {
			c.dirs[d] = true
		}
	}
	return c
}

// brokenLink is one link whose target is missing.
type brokenLink struct {
	File   string
	Line   int
	Target string
	Reason string
}

func (b brokenLink) String() string {
	return fmt.Sprintf("%s:%d: %s: %s", b.File, b.Line, b.Target, b.Reason)
}

// link is a link target found in a Markdown text, with its line.
type link struct {
	Line   int
	Target string
}

var (
	// [text](target "title") and ![alt](target), text with one level of nested brackets.
	inlineLinkRe = regexp.MustCompile(`!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>\n]*>|[^\s()]*(?:\([^\s()]*\)[^\s()]*)*)(?:\s+(?:"[^"\n]*"|'[^'\n]*'))?\s*\)`)
	// [label]: target
	refDefRe = regexp.MustCompile(`(?m)^ {0,3}\[[^\]\n]+\]:\s*(<[^>\n]*>|\S+)`)
	// <img src="target"> and <a href="target">
	htmlRe = regexp.MustCompile(`<(?:img|a)\s[^>]*?(?:src|href)\s*=\s*"([^"]*)"`)
	// an explicit anchor: <a id="x"> or <a name="x">
	htmlAnchorRe = regexp.MustCompile(`<a\s[^>]*?(?:id|name)\s*=\s*"([^"]*)"`)
	schemeRe     = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:`)
	headingRe    = regexp.MustCompile(`^ {0,3}(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$`)
	mdLinkTextRe = regexp.MustCompile(`!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\([^)]*\)`)
)

// blankCode replaces fenced code blocks and inline code spans with spaces,
// keeping line breaks, so links inside code are not links.
func blankCode(md string) string {
	b := []byte(md)
	lines := bytes.SplitAfter(b, []byte("\n"))
	var fence []byte
	off := 0
	for _, ln := range lines {
		t := bytes.TrimLeft(ln, " ")
		switch {
		case fence == nil && (bytes.HasPrefix(t, []byte("```")) || bytes.HasPrefix(t, []byte("~~~"))):
			n := 0
			for n < len(t) && t[n] == t[0] {
				n++
			}
			fence = bytes.Repeat(t[:1], n)
			blank(b[off : off+len(ln)])
		case fence != nil:
			if bytes.HasPrefix(bytes.TrimRight(t, " \r\n"), fence) && len(bytes.Trim(t, string(fence[:1])+" \r\n")) == 0 {
				fence = nil
			}
			blank(b[off : off+len(ln)])
		}
		off += len(ln)
	}
	// Inline code: a run of n backticks up to the next run of exactly n.
	for i := 0; i < len(b); {
		if b[i] != '`' {
			i++
			continue
		}
		n := run(b, i)
		end := -1
		for j := i + n; j < len(b); {
			if b[j] != '`' {
				j++
				continue
			}
			m := run(b, j)
			if m == n {
				end = j + m
				break
			}
			j += m
		}
		if end < 0 {
			i += n // a literal run of backticks
			continue
		}
		blank(b[i:end])
		i = end
	}
	return string(b)
}

func run(b []byte, i int) int {
	n := 0
	for i+n < len(b) && b[i+n] == b[i] {
		n++
	}
	return n
}

func blank(b []byte) {
	for i := range b {
		if b[i] != '\n' {
			b[i] = ' '
		}
	}
}

// extractLinks returns every link and image target in md outside code.
func extractLinks(md string) []link {
	text := blankCode(md)
	var out []link
	add := func(idx []int) {
		t := strings.TrimSpace(text[idx[2]:idx[3]])
		t = strings.TrimSuffix(strings.TrimPrefix(t, "<"), ">")
		out = append(out, link{Line: 1 + strings.Count(text[:idx[0]], "\n"), Target: t})
	}
	for _, re := range []*regexp.Regexp{inlineLinkRe, refDefRe, htmlRe} {
		for _, idx := range re.FindAllStringSubmatchIndex(text, -1) {
			add(idx)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Line < out[j].Line })
	return out
}

// slug is the anchor GitHub gives a heading: lower case, punctuation
// dropped (letters, digits, '-', '_' and spaces kept), spaces to '-'.
func slug(heading string) string {
	h := mdLinkTextRe.ReplaceAllString(heading, "$1")
	var b strings.Builder
	for _, r := range strings.ToLower(h) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// anchorsOf returns the anchors a Markdown text defines: one per heading
// outside code fences (repeats get -1, -2, … as on GitHub; code spans in a
// heading keep their text) and explicit HTML anchors.
func anchorsOf(md string) map[string]bool {
	out := map[string]bool{}
	seen := map[string]int{}
	orig := strings.Split(md, "\n")
	for i, ln := range strings.Split(blankCode(md), "\n") {
		if !headingRe.MatchString(ln) {
			continue
		}
		m := headingRe.FindStringSubmatch(orig[i])
		s := slug(strings.ReplaceAll(m[2], "`", ""))
		if n := seen[s]; n > 0 {
			out[fmt.Sprintf("%s-%d", s, n)] = true
		} else {
			out[s] = true
		}
		seen[s]++
	}
	for _, m := range htmlAnchorRe.FindAllStringSubmatch(md, -1) {
		out[m[1]] = true
	}
	return out
}

func (c *checker) anchorsIn(file string) (map[string]bool, error) {
	if a, ok := c.anchors[file]; ok {
		return a, nil
	}
	b, err := c.read(file)
	if err != nil {
		return nil, err
	}
	a := anchorsOf(string(b))
	c.anchors[file] = a
	return a, nil
}

// checkTarget explains why target, linked from file, is broken ("" = fine).
func (c *checker) checkTarget(file, target string) string {
	if target == "" {
		return "empty link"
	}
	if schemeRe.MatchString(target) || strings.HasPrefix(target, "//") {
		return "" // http:, https:, mailto: and other absolute URLs are not checked
	}
	p, frag, _ := strings.Cut(target, "#")
	p, _, _ = strings.Cut(p, "?")
	if u, err := url.PathUnescape(p); err == nil {
		p = u
	}
	dest := file
	if p != "" {
		if strings.HasPrefix(p, "/") {
			dest = path.Clean(strings.TrimPrefix(p, "/"))
		} else {
			dest = path.Clean(path.Join(path.Dir(file), p))
		}
		if dest == ".." || strings.HasPrefix(dest, "../") {
			return "points outside the repository"
		}
		if !c.tracked[dest] && !c.dirs[dest] && dest != "." {
			return "no such file in the repository (is it committed or `git add`ed?)"
		}
	}
	if frag == "" || !strings.HasSuffix(strings.ToLower(dest), ".md") {
		return ""
	}
	as, err := c.anchorsIn(dest)
	if err != nil {
		return fmt.Sprintf("cannot read %s: %v", dest, err)
	}
	if !as[strings.ToLower(frag)] && !as[frag] {
		return fmt.Sprintf("no heading in %s gives the anchor #%s", dest, frag)
	}
	return ""
}

// checkFile returns the broken links of one Markdown file.
func (c *checker) checkFile(file string, md string) []brokenLink {
	var out []brokenLink
	for _, l := range extractLinks(md) {
		if why := c.checkTarget(file, l.Target); why != "" {
			out = append(out, brokenLink{File: file, Line: l.Line, Target: l.Target, Reason: why})
		}
	}
	return out
}

// repoRoot walks up from the test's folder to the folder holding go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test's folder")
		}
		dir = parent
	}
}

// trackedFiles lists the files in the repository's git index.
func trackedFiles(t *testing.T, root string) []string {
	t.Helper()
	cmd := exec.Command("git", "ls-files", "-z")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("git ls-files: %v: %s", err, ee.Stderr)
		}
		t.Fatalf("git ls-files (the documentation check needs git and a checkout): %v", err)
	}
	var files []string
	for _, f := range strings.Split(string(out), "\x00") {
		if f != "" {
			files = append(files, f)
		}
	}
	return files
}

func repoChecker(t *testing.T) (*checker, []string, string) {
	root := repoRoot(t)
	files := trackedFiles(t, root)
	c := newChecker(files, func(name string) ([]byte, error) {
		return os.ReadFile(filepath.Join(root, filepath.FromSlash(name)))
	})
	var mds []string
	for _, f := range files {
		if strings.HasSuffix(strings.ToLower(f), ".md") {
			mds = append(mds, f)
		}
	}
	return c, mds, root
}

// TestChecker feeds the checker Markdown with good and broken links, so
// the repository test below can fail.
func TestChecker(t *testing.T) {
	files := map[string]string{
		"README.md":      "# Top\n",
		"docs/guide.md":  "# Guide\n\n## Install the `hub` (Debian)\n\n## Tests\n\n## Tests\n\n<a id=\"custom\"></a>\n",
		"docs/pic.png":   "png",
		"deploy/x/y.txt": "y",
	}
	var names []string
	for n := range files {
		names = append(names, n)
	}
	c := newChecker(names, func(name string) ([]byte, error) {
		s, ok := files[name]
		if !ok {
			return nil, os.ErrNotExist
		}
		return []byte(s), nil
	})
	cases := []struct {
		name, file, md string
		broken         int
	}{
		{"relative file", "README.md", "see [the guide](docs/guide.md).", 0},
		{"broken file", "README.md", "see [the guide](docs/missing.md).", 1},
		{"broken image", "README.md", "![board](docs/board.png)", 1},
		{"good image", "README.md", "![pic](docs/pic.png \"a title\")", 0},
		{"from a subfolder", "docs/guide.md", "[up](../README.md) and [pic](pic.png)", 0},
		{"outside the repository", "docs/guide.md", "[x](../../etc/passwd)", 1},
		{"folder", "README.md", "[deploy](deploy/) and [x](deploy/x)", 0},
		{"external links are skipped", "README.md", "[a](https://example.com/x) [b](http://x) [c](mailto:a@b.c)", 0},
		{"anchor into a file", "README.md", "[i](docs/guide.md#install-the-hub-debian)", 0},
		{"repeated heading", "README.md", "[t](docs/guide.md#tests-1)", 0},
		{"html anchor", "README.md", "[c](docs/guide.md#custom)", 0},
		{"missing anchor", "README.md", "[i](docs/guide.md#install)", 1},
		{"anchor in the same file", "docs/guide.md", "[t](#tests)", 0},
		{"missing anchor in the same file", "docs/guide.md", "[t](#nothing-here)", 1},
		{"anchor into a non-Markdown file is not checked", "README.md", "[p](docs/pic.png#x)", 0},
		{"link inside a code fence", "README.md", "```\n[x](missing.md)\n```\n", 0},
		{"link inside inline code", "README.md", "use `[x](missing.md)` literally", 0},
		{"link after a code fence", "README.md", "```sh\necho\n```\n[x](missing.md)", 1},
		{"reference definition", "README.md", "[x][r]\n\n[r]: missing.md\n", 1},
		{"html image", "README.md", "<img src=\"missing.png\">", 1},
		{"escaped path", "README.md", "[p](docs/pic%2Epng)", 0},
		{"two broken on one page", "README.md", "[a](a.md)\n\n[b](b.md)", 2},
		{"empty target", "README.md", "[a]()", 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := c.checkFile(tc.file, tc.md)
			if len(got) != tc.broken {
				t.Errorf("%d broken links, want %d: %v", len(got), tc.broken, got)
			}
		})
	}
	t.Run("line numbers", func(t *testing.T) {
		got := c.checkFile("README.md", "# T\n\ntext\n[x](nope.md)\n")
		if len(got) != 1 || got[0].Line != 4 {
			t.Fatalf("got %v, want one broken link on line 4", got)
		}
	})
}

func TestSlug(t *testing.T) {
	for _, tc := range []struct{ heading, want string }{
		{"Install the hub", "install-the-hub"},
		{"Durable outbox (edge/store)", "durable-outbox-edgestore"},
		{"HTTP API (/api/v1)", "http-api-apiv1"},
		{"Evaluate the school's own photos", "evaluate-the-schools-own-photos"},
		{"Targets: summary", "targets-summary"},
		{"Go-live checklist", "go-live-checklist"},
		{"Cơ sở dữ liệu dùng chung", "cơ-sở-dữ-liệu-dùng-chung"},
		{"A [link](x.md) in it", "a-link-in-it"},
		{"snake_case stays", "snake_case-stays"},
	} {
		if got := slug(tc.heading); got != tc.want {
			t.Errorf("slug(%q) = %q, want %q", tc.heading, got, tc.want)
		}
	}
}

// TestRepositoryLinks checks every relative link and image in every
// tracked Markdown file.
func TestRepositoryLinks(t *testing.T) {
	c, mds, root := repoChecker(t)
	if len(mds) == 0 {
		t.Fatal("no tracked Markdown files")
	}
	for _, f := range mds {
		b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(f)))
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		for _, bl := range c.checkFile(f, string(b)) {
			t.Errorf("broken link: %s", bl)
		}
	}
}

// TestReadmeSize keeps README.md short enough for people meeting the project.
func TestReadmeSize(t *testing.T) {
	root := repoRoot(t)
	fi, err := os.Stat(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > readmeMaxBytes {
		t.Errorf("README.md is %d bytes; keep it at most %d (move detail to the documents it links)", fi.Size(), readmeMaxBytes)
	}
}

// TestScreenshot checks the README's screenshot: committed, a real PNG,
// under the size limit, and shown by the README.
func TestScreenshot(t *testing.T) {
	c, _, root := repoChecker(t)
	if !c.tracked[screenshotPath] {
		t.Fatalf("%s is not in the repository", screenshotPath)
	}
	b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(screenshotPath)))
	if err != nil {
		t.Fatal(err)
	}
	if len(b) >= screenshotMaxBytes {
		t.Errorf("%s is %d bytes; keep it under %d", screenshotPath, len(b), screenshotMaxBytes)
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: %v", screenshotPath, err)
	}
	if cfg.Width < 640 || cfg.Height < 400 {
		t.Errorf("%s is %d×%d; too small to show the board", screenshotPath, cfg.Width, cfg.Height)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	shown := false
	for _, l := range extractLinks(string(readme)) {
		if path.Clean(l.Target) == screenshotPath {
			shown = true
		}
	}
	if !shown {
		t.Errorf("README.md does not show %s", screenshotPath)
	}
}
