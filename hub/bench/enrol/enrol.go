// Package enrol is `hub bench-enrol`: bulk enrolment of the test photos
// through hub/enrol's real pipeline, measured. It lives outside hub/enrol
// so the production package carries no benchmark harness.
package enrol

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/diemdanh/diemdanh/hub/consent"
	"github.com/diemdanh/diemdanh/hub/enrol"
	"github.com/diemdanh/diemdanh/models/benchutil"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/imagecheck"
)

// BenchResult is what `hub bench-enrol --json` prints.
type BenchResult struct {
	Photos     int     `json:"photos"`
	Workers    int     `json:"workers"`
	CPUs       int     `json:"cpus"`
	Seconds    float64 `json:"seconds"`
	PhotosPerS float64 `json:"photos_per_s"`
	P50Ms      float64 `json:"p50_ms_per_photo"`
	P95Ms      float64 `json:"p95_ms_per_photo"`
	MeanMPx    float64 `json:"mean_megapixels"`
	Accepted   int     `json:"accepted"`
	Review     int     `json:"review"`
	Rejected   int     `json:"rejected"`
	RSSMB      float64 `json:"rss_mb"`
	PeakRSSMB  float64 `json:"peak_rss_mb"`
	TargetPerS float64 `json:"target_photos_per_s"`
	TargetMet  bool    `json:"target_met"`
	// CPU time of the whole process per photo, and the rate two
	// uncontended cores would give (the machine may be shared).
	CPUMsPerPhoto    float64 `json:"cpu_ms_per_photo"`
	EstPerS2CoresCPU float64 `json:"est_photos_per_s_2_cores_from_cpu"`
	LoadAvg          string  `json:"load_avg"`
	Model            string  `json:"model"`
	Description      string  `json:"description"`
}

// cpuSeconds is the process's user and system CPU time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// BenchEnrolMain is `hub bench-enrol [--json] [--n 60] [--workers 0]`: it
// bulk-enrols the test photos (one pupil per photo, cycled to --n) into a
// throwaway hub database with the real engine, consent checks, duplicate
// guard and encrypted store, and reports photos/s, p95 per photo and RSS.
func BenchEnrolMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := benchutil.FlagSet("bench-enrol", stderr)
	asJSON := benchutil.JSONFlag(fs)
	n := fs.Int("n", 66, "photos to enrol")
	workers := fs.Int("workers", 0, "workers (0 = CPUs)")
	dir := fs.String("photos", "", "photo folder (default the test data's faces/images)")
	models := fs.String("models", "", "models folder")
	if err := fs.Parse(args); err != nil {
		return errors.Join(enrol.ErrUsage, err)
	}
	if *dir == "" {
		td, err := conf.TestDataDir()
		if err != nil {
			return err
		}
		*dir = filepath.Join(td, "faces", "images")
	}
	srcs, _ := filepath.Glob(filepath.Join(*dir, "*.jpg"))
	if len(srcs) == 0 || *n < 1 {
		return fmt.Errorf("bench-enrol: no photos in %s", *dir)
	}
	tmp, err := os.MkdirTemp("", "bench-enrol-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	photoDir := filepath.Join(tmp, "photos")
	rows, mpx, err := stageBenchPhotos(srcs, *n, photoDir)
	if err != nil {
		return err
	}
	e, err := enrol.OpenEnv(ctx, filepath.Join(tmp, "hub.db"), filepath.Join(tmp, "template.key"), *models, *workers, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer e.Close()
	if err := seedBenchPupils(ctx, e, rows); err != nil {
		return err
	}
	res, err := runBenchEnrol(ctx, e, photoDir, rows)
	if err != nil {
		return err
	}
	res.MeanMPx = benchutil.Round(mpx/float64(*n), 3)
	if *asJSON {
		return benchutil.PrintJSON(stdout, res)
	}
	fmt.Fprintf(stdout, "bench-enrol: %d photos (%.1f MP mean) in %.1fs on %d workers: %.1f photos/s, p50 %.0f ms, p95 %.0f ms per photo, RSS %.0f MB (peak %.0f MB); target %.0f photos/s met: %v\n",
		res.Photos, res.MeanMPx, res.Seconds, res.Workers, res.PhotosPerS, res.P50Ms, res.P95Ms, res.RSSMB, res.PeakRSSMB, res.TargetPerS, res.TargetMet)
	return nil
}

// stageBenchPhotos links n photos, cycling srcs, into photoDir as one
// pupil's photo each and returns their roster and total megapixels.
func stageBenchPhotos(srcs []string, n int, photoDir string) ([]enrol.RosterRow, float64, error) {
	if err := os.Mkdir(photoDir, 0o700); err != nil {
		return nil, 0, err
	}
	var rows []enrol.RosterRow
	var mpx float64
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("%012d", 790000000000+i)
		src := srcs[i%len(srcs)]
		if err := os.Symlink(src, filepath.Join(photoDir, id+".jpg")); err != nil {
			return nil, 0, err
		}
		if b, err := os.ReadFile(src); err == nil {
			if info, err := imagecheck.Sniff(b, imagecheck.Limits{}); err == nil {
				mpx += float64(info.Width*info.Height) / 1e6
			}
		}
		rows = append(rows, enrol.RosterRow{PupilID: id})
	}
	return rows, mpx, nil
}

// seedBenchPupils creates the bench school and its pupils, each with a
// consent to enrol and keep photos.
func seedBenchPupils(ctx context.Context, e *enrol.Env, rows []enrol.RosterRow) error {
	if _, err := e.DB.W.ExecContext(ctx, `INSERT INTO schools(id, name) VALUES ('bench', 'Bench school')`); err != nil {
		return err
	}
	for _, r := range rows {
		if _, err := e.DB.W.ExecContext(ctx, `INSERT INTO pupils(id, school_id, full_name, date_of_birth) VALUES (?, 'bench', 'Bench pupil', '2019-09-01')`, r.PupilID); err != nil {
			return err
		}
		if _, err := e.Consent.Record(ctx, "bench", consent.Grant{PupilID: r.PupilID, GuardianName: "Bench guardian",
			PupilConsented: true, ScopeFace: true, ScopePhotos: true, DocumentRef: "BENCH-" + r.PupilID}); err != nil {
			return err
		}
	}
	return nil
}

// runBenchEnrol bulk-enrols the roster and measures the run (all but
// MeanMPx).
func runBenchEnrol(ctx context.Context, e *enrol.Env, photoDir string, rows []enrol.RosterRow) (BenchResult, error) {
	var lat []float64
	var lmu sync.Mutex
	b := &enrol.Bulk{Svc: e.Service, Dir: photoDir, RunKey: "bench", Actor: "bench", Workers: e.Engine.Workers(),
		OnPupil: func(photos int, d time.Duration) {
			lmu.Lock()
			for i := 0; i < photos; i++ {
				lat = append(lat, float64(d.Microseconds())/1000/float64(photos))
			}
			lmu.Unlock()
		}}
	cpu0 := cpuSeconds()
	start := time.Now()
	reps, err := b.Run(ctx, rows)
	el := time.Since(start).Seconds()
	cpu := cpuSeconds() - cpu0
	if err != nil {
		return BenchResult{}, err
	}
	res := BenchResult{Photos: len(lat), Workers: e.Engine.Workers(), CPUs: runtime.NumCPU(), Seconds: benchutil.Round(el, 3),
		RSSMB: benchutil.Round(benchutil.RSSMB(), 3), PeakRSSMB: benchutil.Round(benchutil.PeakRSSMB(), 3),
		TargetPerS: 10, Model: e.Engine.Model().String(),
		Description: "bulk enrolment of the test photos (one pupil each): decode, detect, quality gates, descriptor, duplicate guard, AES-GCM store, audit"}
	if el > 0 {
		res.PhotosPerS = benchutil.Round(float64(len(lat))/el, 3)
	}
	res.TargetMet = res.PhotosPerS >= res.TargetPerS
	if len(lat) > 0 && cpu > 0 {
		res.CPUMsPerPhoto = benchutil.Round(cpu*1000/float64(len(lat)), 3)
		res.EstPerS2CoresCPU = benchutil.Round(2/(cpu/float64(len(lat))), 3)
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		res.LoadAvg = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	res.P50Ms = benchutil.Round(benchutil.Percentile(lat, 0.50), 3)
	res.P95Ms = benchutil.Round(benchutil.Percentile(lat, 0.95), 3)
	for _, r := range reps {
		res.Accepted += r.Accepted
		res.Review += r.Review
		res.Rejected += r.Rejected
	}
	return res, nil
}
