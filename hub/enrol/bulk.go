package enrol

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/diemdanh/diemdanh/hub/consent"
	"github.com/diemdanh/diemdanh/hub/roster"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/wire"
)

// RosterRow is one pupil of a bulk-enrolment roster.
type RosterRow struct {
	Line    int
	PupilID string
	Photos  []string // file names inside the photos folder; empty = find by personal ID
	// Optional consent columns: recorded when the pupil has no valid consent.
	ConsentRef      string
	ConsentGuardian string
	ConsentPupil    bool
	ConsentPhotos   bool
}

// RowError is a roster problem: line, field and reason.
type RowError struct {
	Line   int    `json:"line"`
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

func (e RowError) Error() string { return fmt.Sprintf("line %d: %s: %s", e.Line, e.Field, e.Reason) }

// RosterErrors is every problem of a refused roster.
type RosterErrors []RowError

func (e RosterErrors) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "roster refused (%d problems; nothing was enrolled):", len(e))
	for i, x := range e {
		if i == 20 {
			fmt.Fprintf(&b, "\n  … %d more", len(e)-20)
			break
		}
		b.WriteString("\n  " + x.Error())
	}
	return b.String()
}

// MaxRosterBytes bounds a roster file.
const MaxRosterBytes = 16 << 20

func formula(s string) bool {
	return s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0]))
}

func yes(s string) (bool, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "0", "no", "n", "false", "không", "khong":
		return false, true
	case "1", "yes", "y", "true", "có", "co", "x":
		return true, true
	}
	return false, false
}

// ParseRoster reads a roster CSV (UTF-8 with an optional BOM or UTF-16
// with a BOM; comma, semicolon or tab): a header with personal_id (or id /
// pupil_id / ma_dinh_danh) and optional photos (file names separated by ';'
// or '|'), consent_ref, consent_guardian, consent_pupil, consent_photos.
// The whole file is refused, with every problem listed, when any row is
// bad: another encoding (save as "CSV UTF-8"), a cell that looks like a
// spreadsheet formula, a malformed personal ID, a duplicate pupil, an
// unsafe photo name.
func ParseRoster(r io.Reader) ([]RosterRow, error) {
	b, err := readRosterText(r)
	if err != nil {
		return nil, err
	}
	p, err := newRosterParse(b)
	if err != nil {
		return nil, err
	}
	rows, errs := p.parseRows()
	if len(errs) > 0 {
		return nil, errs
	}
	if len(rows) == 0 {
		return nil, RosterErrors{{2, "row", "the roster has no pupils"}}
	}
	return rows, nil
}

// readRosterText reads a roster file, at most MaxRosterBytes, as UTF-8.
func readRosterText(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxRosterBytes+1))
	if err != nil {
		return nil, fmt.Errorf("roster: %w", err)
	}
	if len(b) > MaxRosterBytes {
		return nil, RosterErrors{{0, "file", fmt.Sprintf("larger than %d MB", MaxRosterBytes>>20)}}
	}
	// UTF-8 (optional BOM) or UTF-16 with a BOM; anything else is refused
	// naming the first bad line (the roster importer's decoder).
	if b, err = roster.DecodeText(b); err != nil {
		var ee *roster.EncodingError
		if errors.As(err, &ee) {
			return nil, RosterErrors{{ee.Line, "file", ee.Reason}}
		}
		return nil, err
	}
	return b, nil
}

// rosterParse is a roster file past its header.
type rosterParse struct {
	cr   *csv.Reader
	head []string
	col  map[string]int // lower-case column name -> index
	idc  int            // the personal ID's column
	seen map[string]int // personal ID -> its line
}

// newRosterParse reads the header row; it needs a personal ID column.
func newRosterParse(b []byte) (*rosterParse, error) {
	cr := csv.NewReader(bytes.NewReader(b))
	cr.Comma = roster.SniffComma(b) // comma, semicolon or tab
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = false
	head, err := cr.Read()
	if err != nil {
		return nil, RosterErrors{{1, "header", "unreadable: " + err.Error()}}
	}
	p := &rosterParse{cr: cr, head: head, col: map[string]int{}, seen: map[string]int{}}
	for i, h := range head {
		h = strings.ToLower(strings.TrimSpace(h))
		switch h {
		case "id", "pupil_id", "personal_id", "ma_dinh_danh", "mã định danh":
			h = "personal_id"
		}
		p.col[h] = i
	}
	idc, ok := p.col["personal_id"]
	if !ok {
		return nil, RosterErrors{{1, "header", "needs a personal_id column"}}
	}
	p.idc = idc
	return p, nil
}

// get is rec's cell of column name, trimmed ("" without one).
func (p *rosterParse) get(rec []string, name string) string {
	if i, ok := p.col[name]; ok && i < len(rec) {
		return strings.TrimSpace(rec[i])
	}
	return ""
}

// parseRows reads the rows and lists every problem (it gives up after
// 200 unreadable rows).
func (p *rosterParse) parseRows() ([]RosterRow, RosterErrors) {
	var rows []RosterRow
	var errs RosterErrors
	for {
		rec, err := p.cr.Read()
		if errors.Is(err, io.EOF) {
			return rows, errs
		}
		if err != nil {
			line := 0
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				line = pe.StartLine
			}
			errs = append(errs, RowError{line, "row", err.Error()})
			if len(errs) > 200 {
				return rows, errs
			}
			continue
		}
		line, _ := p.cr.FieldPos(0)
		if p.idc >= len(rec) {
			errs = append(errs, RowError{line, "personal_id", "missing"})
			continue
		}
		row, rowErrs := p.parseRow(rec, line)
		errs = append(errs, rowErrs...)
		rows = append(rows, row)
	}
}

// parseRow checks one row: no formula cells, a new well-formed personal
// ID, safe photo names, yes/no consents.
func (p *rosterParse) parseRow(rec []string, line int) (RosterRow, []RowError) {
	var errs []RowError
	for i, cell := range rec {
		if formula(strings.TrimSpace(cell)) || formula(cell) {
			name := fmt.Sprintf("column %d", i+1)
			if i < len(p.head) {
				name = p.head[i]
			}
			errs = append(errs, RowError{line, name, "looks like a spreadsheet formula (starts with = + - @); refused / ô bắt đầu bằng = + - @ bị từ chối"})
		}
	}
	row := RosterRow{Line: line, PupilID: strings.TrimSpace(rec[p.idc])}
	if !wire.ValidPersonalID(row.PupilID) {
		errs = append(errs, RowError{line, "personal_id", "must be 12 digits / mã định danh phải có 12 chữ số"})
	} else if prev, dup := p.seen[row.PupilID]; dup {
		errs = append(errs, RowError{line, "personal_id", fmt.Sprintf("duplicate of line %d", prev)})
	}
	p.seen[row.PupilID] = line
	if ph := p.get(rec, "photos"); ph != "" {
		for _, n := range strings.FieldsFunc(ph, func(r rune) bool { return r == ';' || r == '|' }) {
			n = strings.TrimSpace(n)
			if _, ok := CleanName(n); !ok || n == "" {
				errs = append(errs, RowError{line, "photos", fmt.Sprintf("unsafe file name %q (no folders or '..')", truncate(n, 60))})
				continue
			}
			row.Photos = append(row.Photos, n)
		}
	}
	row.ConsentRef = p.get(rec, "consent_ref")
	row.ConsentGuardian = p.get(rec, "consent_guardian")
	var ok1, ok2 bool
	row.ConsentPupil, ok1 = yes(p.get(rec, "consent_pupil"))
	row.ConsentPhotos, ok2 = yes(p.get(rec, "consent_photos"))
	if !ok1 || !ok2 {
		errs = append(errs, RowError{line, "consent_pupil", "use yes/no"})
	}
	return row, errs
}

var photoExt = map[string]bool{".jpg": true, ".jpeg": true, ".png": true, ".webp": true, ".bmp": true}

// FindPhotos maps each pupil to its photo files in dir: the files listed in
// the roster, else files named <personal_id>.<ext>, <personal_id>_N.<ext>
// or <personal_id>-N.<ext>. Only regular files inside dir are used.
func FindPhotos(dir string, rows []RosterRow, maxPer int) (map[string][]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("photos: %w", err)
	}
	byID := map[string][]string{}
	for _, e := range ents {
		n := e.Name()
		ext := strings.ToLower(filepath.Ext(n))
		if !photoExt[ext] {
			continue
		}
		base := strings.TrimSuffix(n, filepath.Ext(n))
		id := base
		if len(base) > 12 && (base[12] == '_' || base[12] == '-') {
			id = base[:12]
		}
		if wire.ValidPersonalID(id) {
			byID[id] = append(byID[id], n)
		}
	}
	out := map[string][]string{}
	for _, r := range rows {
		files := r.Photos
		if len(files) == 0 {
			files = byID[r.PupilID]
		}
		sort.Strings(files)
		if len(files) > maxPer {
			files = files[:maxPer]
		}
		out[r.PupilID] = files
	}
	return out, nil
}

// readPhoto reads name from dir: a plain name, a regular file (symlinks
// are followed but must stay regular files), at most limit bytes (a larger
// file is reported by size without being read).
func readPhoto(dir, name string, limit int) (Photo, error) {
	if _, ok := CleanName(name); !ok {
		return Photo{Name: name}, nil // analyze refuses the name
	}
	p := filepath.Join(dir, name)
	st, err := os.Stat(p)
	if err != nil {
		return Photo{}, err
	}
	if !st.Mode().IsRegular() {
		return Photo{}, fmt.Errorf("%s is not a regular file", name)
	}
	if limit > 0 && st.Size() > int64(limit) {
		return Photo{Name: name, Size: st.Size()}, nil
	}
	f, err := os.Open(p)
	if err != nil {
		return Photo{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	return Photo{Name: name, Data: b}, err
}

// PupilReport is one line of the bulk report.
type PupilReport struct {
	PupilID  string   `json:"personal_id"`
	Status   string   `json:"status"` // enrolled, needs_review, rejected, no_consent, unknown_pupil, no_photos, error
	Photos   int      `json:"photos"`
	Accepted int      `json:"accepted"`
	Review   int      `json:"review"`
	Rejected int      `json:"rejected"`
	Reasons  []string `json:"reasons,omitempty"` // "file: reason" in English
	LyDo     []string `json:"ly_do,omitempty"`   // the same in Vietnamese
	Resumed  bool     `json:"resumed,omitempty"`
}

// Bulk runs a resumable bulk enrolment.
type Bulk struct {
	Svc      *Service
	Dir      string
	RunKey   string
	Actor    string
	Workers  int
	Progress io.Writer
	// OnPupil, when set, is told how long each pupil took (benchmarks).
	OnPupil func(photos int, d time.Duration)
}

// RunKey identifies a bulk run for resuming: the roster file and the photo
// folder.
func RunKey(rosterPath, photosDir string) string {
	a, _ := filepath.Abs(rosterPath)
	b, _ := filepath.Abs(photosDir)
	h := sha256.Sum256([]byte(a + "\x00" + b))
	return hex.EncodeToString(h[:8])
}

type itemState struct {
	status  string
	reasons []string
}

func (b *Bulk) loadDone(ctx context.Context) (map[string]map[string]itemState, error) {
	rows, err := b.Svc.db.R.QueryContext(ctx, `SELECT pupil_id, file, status, reasons FROM enrol_items WHERE run_key = ?`, b.RunKey)
	if err != nil {
		return nil, fmt.Errorf("enrol: resume state: %w", err)
	}
	defer rows.Close()
	out := map[string]map[string]itemState{}
	for rows.Next() {
		var p, f, st, rs string
		if err := rows.Scan(&p, &f, &st, &rs); err != nil {
			return nil, err
		}
		var reasons []string
		_ = json.Unmarshal([]byte(rs), &reasons)
		if out[p] == nil {
			out[p] = map[string]itemState{}
		}
		out[p][f] = itemState{st, reasons}
	}
	return out, rows.Err()
}

func (b *Bulk) saveItems(ctx context.Context, pupil string, items map[string]itemState, tplIDs map[string]int64) error {
	return b.Svc.db.Tx(ctx, func(tx *sql.Tx) error {
		for f, it := range items {
			rs, _ := json.Marshal(it.reasons)
			var tid any
			if id := tplIDs[f]; id != 0 {
				tid = id
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO enrol_items(run_key, pupil_id, file, status, reasons, template_id, at) VALUES (?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT(run_key, pupil_id, file) DO UPDATE SET status = excluded.status, reasons = excluded.reasons, template_id = excluded.template_id, at = excluded.at`,
				b.RunKey, pupil, f, it.status, string(rs), tid, b.Svc.now().UnixMilli()); err != nil {
				return fmt.Errorf("enrol: save state: %w", err)
			}
		}
		return nil
	})
}

func summarize(r *PupilReport, items map[string]itemState, files []string) {
	r.Photos = len(files)
	for _, f := range files {
		it := items[f]
		switch it.status {
		case StatusAccepted:
			r.Accepted++
		case StatusReview:
			r.Review++
			r.Reasons = append(r.Reasons, f+": "+Reason(ReasonDuplicate).EN)
			r.LyDo = append(r.LyDo, f+": "+Reason(ReasonDuplicate).VI)
		default:
			r.Rejected++
			for _, c := range it.reasons {
				r.Reasons = append(r.Reasons, f+": "+Reason(c).EN)
				r.LyDo = append(r.LyDo, f+": "+Reason(c).VI)
			}
		}
	}
	switch {
	case r.Accepted > 0:
		r.Status = "enrolled"
	case r.Review > 0:
		r.Status = "needs_review"
	default:
		r.Status = "rejected"
	}
}

// Run enrols every roster row and returns the per-pupil report in roster
// order. Pupils finished by an earlier (killed) run with the same RunKey
// are not processed again; their earlier outcome is reported.
func (b *Bulk) Run(ctx context.Context, rows []RosterRow) ([]PupilReport, error) {
	done, err := b.loadDone(ctx)
	if err != nil {
		return nil, err
	}
	files, err := FindPhotos(b.Dir, rows, b.Svc.cfg.MaxPhotos)
	if err != nil {
		return nil, err
	}
	reports := make([]PupilReport, len(rows))
	var todo []int
	totalPhotos, resumed := 0, 0
	for i, r := range rows {
		reports[i].PupilID = r.PupilID
		fs := files[r.PupilID]
		if len(fs) > 0 && len(done[r.PupilID]) >= len(fs) {
			summarize(&reports[i], done[r.PupilID], fs)
			reports[i].Resumed = true
			resumed++
			continue
		}
		todo = append(todo, i)
		totalPhotos += len(fs)
	}
	pr := newProgress(b.Progress, len(rows), resumed, totalPhotos, b.Svc.now)
	if resumed > 0 && b.Progress != nil {
		fmt.Fprintf(b.Progress, "resuming: %d of %d pupils already done by an earlier run\n", resumed, len(rows))
	}
	workers := b.Workers
	if workers <= 0 {
		workers = max(1, b.Svc.eng.Workers())
	}
	jobs := make(chan int)
	var wg sync.WaitGroup
	var firstErr error
	var emu sync.Mutex
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				t0 := time.Now()
				n, err := b.one(ctx, rows[i], files[rows[i].PupilID], &reports[i])
				if b.OnPupil != nil && err == nil && n > 0 {
					b.OnPupil(n, time.Since(t0))
				}
				if err != nil {
					emu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					emu.Unlock()
				}
				pr.step(n)
			}
		}()
	}
	for _, i := range todo {
		if ctx.Err() != nil {
			break
		}
		emu.Lock()
		stop := firstErr != nil
		emu.Unlock()
		if stop {
			break
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	pr.finish()
	if firstErr != nil {
		return reports, firstErr
	}
	return reports, ctx.Err()
}

// one enrols one pupil; it returns the number of photos processed.
func (b *Bulk) one(ctx context.Context, row RosterRow, files []string, rep *PupilReport) (int, error) {
	rep.Photos = len(files)
	if len(files) == 0 {
		rep.Status = "no_photos"
		return 0, nil
	}
	t, err := b.Svc.Prepare(ctx, row.PupilID)
	if err != nil && errors.Is(err, consent.ErrNoConsent) && row.ConsentRef != "" {
		g := consent.Grant{PupilID: row.PupilID, GuardianName: row.ConsentGuardian, PupilConsented: row.ConsentPupil,
			ScopeFace: true, ScopePhotos: row.ConsentPhotos, DocumentRef: row.ConsentRef}
		if g.GuardianName == "" {
			g.GuardianName = "(see " + row.ConsentRef + ")"
		}
		if _, cerr := b.Svc.consent.Record(ctx, b.Actor, g); cerr != nil {
			rep.Status = "no_consent"
			rep.Reasons = append(rep.Reasons, cerr.Error())
			return len(files), nil
		}
		t, err = b.Svc.Prepare(ctx, row.PupilID)
	}
	if err != nil {
		var code string
		switch {
		case errors.Is(err, consent.ErrNoConsent) || strings.Contains(err.Error(), "consent"):
			rep.Status, code = "no_consent", ReasonNoConsent
		case strings.Contains(err.Error(), "unknown"):
			rep.Status, code = "unknown_pupil", ReasonUnknownPupil
		default:
			return 0, err
		}
		rep.Reasons = append(rep.Reasons, Reason(code).EN+": "+err.Error())
		rep.LyDo = append(rep.LyDo, Reason(code).VI)
		return len(files), nil
	}
	photos := make([]Photo, 0, len(files))
	for _, f := range files {
		p, err := readPhoto(b.Dir, f, b.Svc.eng.Limits().MaxBytes)
		if err != nil {
			p = Photo{Name: f} // empty data: "unreadable"
		}
		photos = append(photos, p)
	}
	as := make(Analyzed, len(photos))
	for i, p := range photos {
		as[i] = b.Svc.analyze(ctx, i, p)
	}
	res, err := b.Svc.Commit(ctx, b.Actor, t, as)
	if err != nil {
		return len(files), err
	}
	items := map[string]itemState{}
	ids := map[string]int64{}
	for i, v := range res.Photos {
		var codes []string
		for _, r := range v.Reasons {
			codes = append(codes, r.Code)
		}
		items[files[i]] = itemState{v.Status, codes}
		ids[files[i]] = v.TemplateID
	}
	if err := b.saveItems(ctx, row.PupilID, items, ids); err != nil {
		return len(files), err
	}
	summarize(rep, items, files)
	return len(files), nil
}

// progress draws "[####....] 12/40 pupils · 30 photos · 11.2 photos/s · ETA 0:03".
type progress struct {
	w               io.Writer
	mu              sync.Mutex
	total, done     int
	photosTotal, ph int
	start, last     time.Time
	now             func() time.Time
	tty             bool
}

func newProgress(w io.Writer, total, done, photos int, now func() time.Time) *progress {
	p := &progress{w: w, total: total, done: done, photosTotal: photos, now: now, start: now()}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progress) step(photos int) {
	if p == nil || p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done++
	p.ph += photos
	now := p.now()
	if !p.tty && now.Sub(p.last) < 500*time.Millisecond && p.done < p.total {
		return
	}
	p.last = now
	p.draw(now)
}

func (p *progress) draw(now time.Time) {
	el := now.Sub(p.start).Seconds()
	rate := 0.0
	if el > 0 {
		rate = float64(p.ph) / el
	}
	eta := "--:--"
	if rate > 0 {
		left := time.Duration(float64(p.photosTotal-p.ph) / rate * float64(time.Second))
		eta = fmt.Sprintf("%d:%02d", int(left.Minutes()), int(left.Seconds())%60)
	}
	const width = 30
	fill := 0
	if p.total > 0 {
		fill = width * p.done / p.total
	}
	bar := strings.Repeat("#", fill) + strings.Repeat(".", width-fill)
	end := "\n"
	if p.tty {
		end = ""
		fmt.Fprint(p.w, "\r")
	}
	fmt.Fprintf(p.w, "[%s] %d/%d pupils · %d photos · %.1f photos/s · ETA %s%s", bar, p.done, p.total, p.ph, rate, eta, end)
}

func (p *progress) finish() {
	if p == nil || p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		p.draw(p.now())
		fmt.Fprintln(p.w)
	}
}

// csvSafe neutralises a cell a spreadsheet would run as a formula.
func csvSafe(s string) string {
	if formula(s) {
		return "'" + s
	}
	return s
}

// WriteReport writes the report as CSV to path and as JSON next to it
// (path with .json).
func WriteReport(path string, reps []PupilReport) (string, error) {
	var b bytes.Buffer
	b.WriteString("\xef\xbb\xbf") // Excel opens UTF-8 Vietnamese correctly with a BOM
	w := csv.NewWriter(&b)
	_ = w.Write([]string{"personal_id", "status", "photos", "accepted", "review", "rejected", "reasons", "ly_do"})
	for _, r := range reps {
		_ = w.Write([]string{csvSafe(r.PupilID), r.Status, fmt.Sprint(r.Photos), fmt.Sprint(r.Accepted), fmt.Sprint(r.Review),
			fmt.Sprint(r.Rejected), csvSafe(strings.Join(r.Reasons, "; ")), csvSafe(strings.Join(r.LyDo, "; "))})
	}
	w.Flush()
	if err := conf.WriteFileAtomic(path, b.Bytes(), 0o640); err != nil {
		return "", err
	}
	jp := strings.TrimSuffix(path, filepath.Ext(path)) + ".json"
	j, _ := json.MarshalIndent(map[string]any{"pupils": reps}, "", "  ")
	if err := conf.WriteFileAtomic(jp, j, 0o640); err != nil {
		return "", err
	}
	return jp, nil
}
