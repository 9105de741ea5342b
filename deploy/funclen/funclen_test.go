package funclen

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// MaxLines is the longest a function may be, from its func keyword to its
// closing brace. Longer ones are split into named steps.
const MaxLines = 100

// long is one function over MaxLines.
type long struct {
	pos   token.Position
	name  string
	lines int
}

func (l long) String() string {
	return fmt.Sprintf("%s:%d %s %d lines", l.pos.Filename, l.pos.Line, l.name, l.lines)
}

// TestFunctionLength fails listing every function of the module's non-test
// Go files that is over MaxLines lines.
func TestFunctionLength(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	found, files, err := longFunctions(root, MaxLines)
	if err != nil {
		t.Fatal(err)
	}
	if files < 50 {
		t.Fatalf("only %d Go files under %s: wrong root?", files, root)
	}
	for _, l := range found {
		t.Errorf("%s (max %d): split it into named steps", l, MaxLines)
	}
}

// TestLongFunctionsFound checks the checker on a function of MaxLines+1
// lines and one of MaxLines.
func TestLongFunctionsFound(t *testing.T) {
	dir := t.TempDir()
	body := func(name string, lines int) string {
		return "func " + name + "() {\n" + strings.Repeat("\t_ = 0\n", lines-2) + "}\n"
	}
	src := "package x\n\n" + body("tooLong", MaxLines+1) + body("justRight", MaxLines) +
		"type T struct{}\n\n" + strings.Replace(body("Method", MaxLines+1), "func ", "func (T) ", 1)
	if err := os.WriteFile(filepath.Join(dir, "x.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "x_test.go"), []byte("package x\n\n"+body("testOnly", MaxLines+5)), 0o644); err != nil {
		t.Fatal(err)
	}
	found, _, err := longFunctions(dir, MaxLines)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range found {
		got = append(got, fmt.Sprintf("%s:%d %d", l.name, l.pos.Line, l.lines))
	}
	want := fmt.Sprintf("[tooLong:3 %d T.Method:%d %d]", MaxLines+1, 2*MaxLines+6, MaxLines+1)
	if fmt.Sprint(got) != want {
		t.Errorf("found %v, want %s", got, want)
	}
}

// moduleRoot is the directory of the go.mod above the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("funclen: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("funclen: no go.mod above the working directory")
		}
		dir = parent
	}
}

// longFunctions parses every non-test, non-generated Go file under root
// (skipping testdata, vendor, hidden directories and nested modules) and
// returns the functions over max lines, by file and line, and how many
// files it parsed.
func longFunctions(root string, max int) ([]long, int, error) {
	var found []long
	files := 0
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return skipDir(root, path, d.Name())
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments|parser.SkipObjectResolution)
		if err != nil {
			return fmt.Errorf("funclen: %w", err)
		}
		if ast.IsGenerated(f) {
			return nil
		}
		files++
		rel, _ := filepath.Rel(root, path)
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			start, end := fset.Position(fn.Pos()), fset.Position(fn.End())
			if n := end.Line - start.Line + 1; n > max {
				start.Filename = filepath.ToSlash(rel)
				found = append(found, long{pos: start, name: funcName(fn), lines: n})
			}
		}
		return nil
	})
	sort.SliceStable(found, func(i, j int) bool {
		a, b := found[i].pos, found[j].pos
		return a.Filename < b.Filename || a.Filename == b.Filename && a.Line < b.Line
	})
	return found, files, err
}

// skipDir reports fs.SkipDir for a directory that holds no module code.
func skipDir(root, path, name string) error {
	if path == root {
		return nil
	}
	if name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
		return fs.SkipDir
	}
	if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
		return fs.SkipDir // another module
	}
	return nil
}

// funcName is fn's name, with its receiver's type for a method.
func funcName(fn *ast.FuncDecl) string {
	if fn.Recv == nil || len(fn.Recv.List) == 0 {
		return fn.Name.Name
	}
	t := fn.Recv.List[0].Type
	for {
		switch x := t.(type) {
		case *ast.StarExpr:
			t = x.X
			continue
		case *ast.IndexExpr:
			t = x.X
			continue
		case *ast.IndexListExpr:
			t = x.X
			continue
		case *ast.ParenExpr:
			t = x.X
			continue
		}
		break
	}
	if id, ok := t.(*ast.Ident); ok {
		return id.Name + "." + fn.Name.Name
	}
	return fn.Name.Name
}
