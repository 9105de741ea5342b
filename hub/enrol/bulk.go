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
	"strings"
	"sync"
	"time"

	"github.com/diemdanh/diemdanh/hub/consent"
	"github.com/diemdanh/diemdanh/models/conf"
)

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
