package archcheck

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// One owner per table: hub/roster owns the writes to the roster tables.
// Other packages change them through its functions or its transaction
// helpers (hub/roster/tx.go, tx_city.go), which audit every write and
// report gallery changes.
const rosterOwner = "hub/roster"

var rosterTables = []string{"pupils", "classes", "guardians", "staff"}

// seeders are the packages besides the owner that may write the roster
// tables, and why: harnesses that seed a database to measure or test
// against. A pattern ending in "/..." covers the packages below it. Test
// files (_test.go) are exempt everywhere.
var seeders = map[string]string{
	"hub/bench/...":         "the bench commands seed a roster to measure ingest, live board, enrolment and sync against",
	"hub/ingest/ingesttest": "the ingest test harness seeds schools, classes and pupils for tests and benches",
}

// tableNamers are the packages that may write a table named at run time
// (which the scan cannot tell from a roster table), and the table; an
// entry whose package exists must still need it.
var tableNamers = map[string]string{
	"hub/store/migrate": "the applied-migrations table of the dialect (schema_migrations)",
}

// dynamic stands for a part of a SQL string that is not a literal (a
// variable, a call) when string literals are joined with +.
const dynamic = "\x00"

// writeRe finds a statement that writes a table: INSERT [OR …] INTO,
// REPLACE INTO, UPDATE [OR …] … SET, DELETE FROM. The table is a name
// (optionally main.-qualified or quoted), or dynamic, or a fmt verb.
var writeRe = regexp.MustCompile(`(?is)\b(?:insert(?:\s+or\s+\w+)?\s+into|replace\s+into|delete\s+from|update(?:\s+or\s+\w+)?)\s+` +
	`(?:main\.)?["\[]?(\x00|%[a-z]|\w+)["\]]?(\s+set\b)?`)

// finding is one write of a roster table, or of a table whose name is not
// a literal.
type finding struct {
	file  string // set by moduleWrites
	line  int
	table string // "" when the name is not a literal
}

func (f finding) what() string {
	if f.table == "" {
		return "writes a table whose name is not a literal (the owner of the write cannot be checked)"
	}
	return "writes table " + f.table
}

// sqlWrites returns the writes of tables in a parsed file, and of tables
// named at run time: every string literal, and every chain of literals
// joined with + (other operands become dynamic).
func sqlWrites(fset *token.FileSet, f *ast.File, tables []string) []finding {
	var out []finding
	check := func(pos token.Pos, s string) {
		for _, m := range writeRe.FindAllStringSubmatch(s, -1) {
			kw := strings.ToLower(strings.Fields(m[0])[0])
			if kw == "update" && m[2] == "" {
				continue // "update staff member": prose, not UPDATE … SET
			}
			table := strings.ToLower(m[1])
			switch {
			case table == dynamic || strings.HasPrefix(table, "%"):
				out = append(out, finding{line: fset.Position(pos).Line})
			case slices.Contains(tables, table):
				out = append(out, finding{line: fset.Position(pos).Line, table: table})
			}
		}
	}
	var visit func(n ast.Node)
	visit = func(n ast.Node) {
		ast.Inspect(n, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.BinaryExpr:
				if x.Op != token.ADD {
					return true
				}
				var b strings.Builder
				lit := false
				for _, p := range operands(x) {
					if s, ok := stringLit(p); ok {
						b.WriteString(s)
						lit = true
					} else {
						b.WriteString(dynamic)
						visit(p)
					}
				}
				if lit {
					check(x.Pos(), b.String())
				}
				return false
			case *ast.BasicLit:
				if s, ok := stringLit(x); ok {
					check(x.Pos(), s)
				}
			}
			return true
		})
	}
	visit(f)
	return out
}

// operands flattens a chain of + (through parentheses).
func operands(e ast.Expr) []ast.Expr {
	switch x := e.(type) {
	case *ast.ParenExpr:
		return operands(x.X)
	case *ast.BinaryExpr:
		if x.Op == token.ADD {
			return append(operands(x.X), operands(x.Y)...)
		}
	}
	return []ast.Expr{e}
}

func stringLit(e ast.Expr) (string, bool) {
	if p, ok := e.(*ast.ParenExpr); ok {
		return stringLit(p.X)
	}
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

// seeder returns the seeders pattern covering package dir pkg, or "".
func seeder(pkg string) string {
	for p := range seeders {
		if base, ok := strings.CutSuffix(p, "/..."); ok {
			if pkg == base || strings.HasPrefix(pkg, base+"/") {
				return p
			}
		} else if pkg == p {
			return p
		}
	}
	return ""
}

// moduleWrites parses every non-test .go file under root (the directories
// the go command reads: no testdata, vendor, or names starting with . or
// _) and returns the writes of tables (and of tables named at run time) by
// package directory, and how many files it parsed.
func moduleWrites(t *testing.T, root string, tables []string) (map[string][]finding, int) {
	t.Helper()
	byPkg := map[string][]finding{}
	files := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if p != root && (name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		files++
		for _, w := range sqlWrites(fset, f, tables) {
			w.file = rel
			byPkg[path.Dir(rel)] = append(byPkg[path.Dir(rel)], w)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return byPkg, files
}

// TestRosterTablesWrittenByRosterOnly fails, naming file and line, for each
// INSERT, UPDATE, DELETE or REPLACE of pupils, classes, guardians or staff
// (or of a table named at run time, outside tableNamers) in a non-test file
// of a package other than hub/roster and the seeders. It also fails when
// hub/roster shows no such write (the scan would be blind) or an exemption
// is no longer needed.
func TestRosterTablesWrittenByRosterOnly(t *testing.T) {
	byPkg, files := moduleWrites(t, "../..", rosterTables)
	if files < 100 {
		t.Fatalf("parsed %d .go files: not the module", files)
	}
	if len(byPkg[rosterOwner]) < len(rosterTables) {
		t.Errorf("found %d writes in %s, want at least one per table: the scan misses SQL", len(byPkg[rosterOwner]), rosterOwner)
	}
	used := map[string]bool{}
	for _, pkg := range slices.Sorted(maps.Keys(byPkg)) {
		if pkg == rosterOwner {
			continue
		}
		if s := seeder(pkg); s != "" {
			used[s] = true
			continue
		}
		for _, w := range byPkg[pkg] {
			if _, ok := tableNamers[pkg]; ok && w.table == "" {
				used[pkg] = true
				continue
			}
			t.Errorf("%s:%d: %s, outside %s: use its functions or transaction helpers (hub/roster/tx.go)", w.file, w.line, w.what(), rosterOwner)
		}
	}
	for _, s := range slices.Sorted(maps.Keys(seeders)) {
		if !used[s] {
			t.Errorf("seeder %s (%s) writes no roster table any more: remove its exemption", s, seeders[s])
		}
	}
	for _, s := range slices.Sorted(maps.Keys(tableNamers)) {
		if _, err := os.Stat(filepath.Join("../..", s)); err == nil && !used[s] {
			t.Errorf("%s (%s) writes no table named at run time any more: remove its exemption", s, tableNamers[s])
		}
	}
}

// TestRosterTableScan checks the scan on a source of known writes, so the
// test above cannot pass by finding nothing.
func TestRosterTableScan(t *testing.T) {
	const src = `package x

func f(db DB, table string) {
	db.Exec(` + "`UPDATE pupils SET active = 0`" + `)
	db.Exec("insert or replace into guardians(a) values (1)")
	db.Exec(` + "`DELETE FROM main.staff WHERE id = ?`" + `)
	db.Exec("REPLACE INTO classes VALUES (1)")
	db.Exec(` + "`UPDATE `+table+` SET active = 0`" + `)
	db.Exec(fmt.Sprintf("DELETE FROM %s WHERE id = ?", table))
	db.Exec(` + "`INSERT INTO pupils (id)\n\t\tVALUES (?)`" + `)
	db.Exec("UPDATE \"staff\" SET x = 1")
	db.Exec(` + "`UPDATE pupils_archive SET x = 1`" + `)
	db.Exec(` + "`SELECT id FROM pupils`" + `)
	db.Exec(` + "`INSERT INTO events SELECT * FROM pupils`" + `)
	log("could not update staff member", "delete from the list")
}
`
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "x.go", src, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	var want []finding
	for line, table := range map[int]string{4: "pupils", 5: "guardians", 6: "staff", 7: "classes", 8: "", 9: "", 10: "pupils", 12: "staff"} {
		want = append(want, finding{line: line, table: table})
	}
	slices.SortFunc(want, func(a, b finding) int { return a.line - b.line })
	if got := sqlWrites(fset, f, rosterTables); !slices.Equal(got, want) {
		t.Errorf("writes found %v, want %v", got, want)
	}
	for pkg, want := range map[string]string{
		"hub/bench/live": "hub/bench/...", "hub/bench": "hub/bench/...", "hub/benchmark": "",
		"hub/ingest/ingesttest": "hub/ingest/ingesttest", "hub/ingest": "", "hub/citysync": "",
	} {
		if got := seeder(pkg); got != want {
			t.Errorf("seeder(%s) = %q, want %q", pkg, got, want)
		}
	}
}
