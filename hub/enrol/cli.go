package enrol

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/consent"
	"github.com/diemdanh/diemdanh/hub/facetemplates"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/imagecheck"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/procstat"
)

// ErrUsage marks a command-line mistake.
var ErrUsage = errors.New("usage")

type env struct {
	db  *store.DB
	eng *faceengine.Engine
	svc *Service
}

func (e *env) close() {
	if e.eng != nil {
		e.eng.Close()
	}
	if e.db != nil {
		e.db.Close()
	}
}

func openEnv(ctx context.Context, dbPath, keyFile, models, embedder string, workers int, log *slog.Logger) (*env, error) {
	e := &env{}
	var err error
	if e.db, err = store.Open(ctx, dbPath, log); err != nil {
		return nil, err
	}
	key, err := facetemplates.LoadKey(keyFile)
	if err != nil {
		e.close()
		return nil, err
	}
	tpl, err := facetemplates.Open(e.db, key, log, time.Now)
	if err != nil {
		e.close()
		return nil, err
	}
	ecfg := faceengine.DefaultEngineConfig()
	ecfg.ModelsDir = conf.ResolveModelsDir(models)
	if embedder != "" {
		ecfg.Embedder = embedder
	}
	ecfg.Workers = workers
	if e.eng, err = faceengine.NewEngine(ecfg, log); err != nil {
		e.close()
		return nil, err
	}
	al := audit.New(e.db, log, time.Now)
	reg := consent.New(e.db, tpl, al, log, time.Now)
	if e.svc, err = New(e.db, e.eng, tpl, reg, al, DefaultConfig(), log, time.Now); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

// EnrolMain is `hub enrol --roster roster.csv --photos DIR`.
func EnrolMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("enrol", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := os.Getenv("DIEMDANH_DATA_DIR")
	if dataDir == "" {
		dataDir = "data"
	}
	roster := fs.String("roster", "", "roster CSV: personal_id[, photos, consent_ref, consent_guardian, consent_pupil, consent_photos]")
	photos := fs.String("photos", "", "folder of photos named <personal_id>[_N].jpg or listed in the roster's photos column")
	dbPath := fs.String("db", filepath.Join(dataDir, "hub.db"), "hub database")
	keyFile := fs.String("key-file", filepath.Join(dataDir, "template.key"), "template key file (or set "+facetemplates.KeyEnv+")")
	models := fs.String("models", "", "models folder (default $MODELS_DIR or models)")
	workers := fs.Int("workers", 0, "photos analysed in parallel (0 = CPUs)")
	embedder := fs.String("embedder", match.DefaultEmbedder.Name, "face model: the hub's enrol.embedder (one of "+strings.Join(faceengine.EmbedderNames(), ", ")+")")
	report := fs.String("report", "enrol-report.csv", "report CSV (a .json twin is written next to it)")
	actor := fs.String("actor", "", "who runs the enrolment, for the audit log (default cli:$USER)")
	if err := fs.Parse(args); err != nil {
		return errors.Join(ErrUsage, err)
	}
	if *roster == "" || *photos == "" {
		fs.Usage()
		return fmt.Errorf("%w: --roster and --photos are required", ErrUsage)
	}
	if *actor == "" {
		*actor = "cli:" + os.Getenv("USER")
	}
	f, err := os.Open(*roster)
	if err != nil {
		return fmt.Errorf("roster: %w", err)
	}
	rows, err := ParseRoster(f)
	f.Close()
	if err != nil {
		return err
	}
	if st, err := os.Stat(*photos); err != nil || !st.IsDir() {
		return fmt.Errorf("photos: %s is not a folder", *photos)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	e, err := openEnv(ctx, *dbPath, *keyFile, *models, *embedder, *workers, log)
	if err != nil {
		return err
	}
	defer e.close()
	b := &Bulk{Svc: e.svc, Dir: *photos, RunKey: RunKey(*roster, *photos), Actor: *actor, Workers: e.eng.Workers(), Progress: stderr}
	reps, runErr := b.Run(ctx, rows)
	jp, err := WriteReport(*report, reps)
	if err != nil {
		return err
	}
	counts := map[string]int{}
	for _, r := range reps {
		if r.Status != "" {
			counts[r.Status]++
		}
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, counts[k]))
	}
	fmt.Fprintf(stdout, "%d pupils: %s\nreport: %s and %s\n", len(reps), strings.Join(parts, ", "), *report, jp)
	return runErr
}

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

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

func procKB(field string) float64 {
	return procstat.StatusMB(field) * 1024
}

// BenchEnrolMain is `hub bench-enrol [--json] [--n 60] [--workers 0]`: it
// bulk-enrols the test photos (one pupil per photo, cycled to --n) into a
// throwaway hub database with the real engine, consent checks, duplicate
// guard and encrypted store, and reports photos/s, p95 per photo and RSS.
func BenchEnrolMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench-enrol", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print one JSON object")
	n := fs.Int("n", 66, "photos to enrol")
	workers := fs.Int("workers", 0, "workers (0 = CPUs)")
	dir := fs.String("photos", "", "photo folder (default the test data's faces/images)")
	models := fs.String("models", "", "models folder")
	if err := fs.Parse(args); err != nil {
		return errors.Join(ErrUsage, err)
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
	e, err := openEnv(ctx, filepath.Join(tmp, "hub.db"), filepath.Join(tmp, "template.key"), *models, "", *workers, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer e.close()
	if err := seedBenchPupils(ctx, e, rows); err != nil {
		return err
	}
	res, err := runBenchEnrol(ctx, e, photoDir, rows)
	if err != nil {
		return err
	}
	res.MeanMPx = round3(mpx / float64(*n))
	if *asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	fmt.Fprintf(stdout, "bench-enrol: %d photos (%.1f MP mean) in %.1fs on %d workers: %.1f photos/s, p50 %.0f ms, p95 %.0f ms per photo, RSS %.0f MB (peak %.0f MB); target %.0f photos/s met: %v\n",
		res.Photos, res.MeanMPx, res.Seconds, res.Workers, res.PhotosPerS, res.P50Ms, res.P95Ms, res.RSSMB, res.PeakRSSMB, res.TargetPerS, res.TargetMet)
	return nil
}

// stageBenchPhotos links n photos, cycling srcs, into photoDir as one
// pupil's photo each and returns their roster and total megapixels.
func stageBenchPhotos(srcs []string, n int, photoDir string) ([]RosterRow, float64, error) {
	if err := os.Mkdir(photoDir, 0o700); err != nil {
		return nil, 0, err
	}
	var rows []RosterRow
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
		rows = append(rows, RosterRow{PupilID: id})
	}
	return rows, mpx, nil
}

// seedBenchPupils creates the bench school and its pupils, each with a
// consent to enrol and keep photos.
func seedBenchPupils(ctx context.Context, e *env, rows []RosterRow) error {
	if _, err := e.db.W.ExecContext(ctx, `INSERT INTO schools(id, name) VALUES ('bench', 'Bench school')`); err != nil {
		return err
	}
	for _, r := range rows {
		if _, err := e.db.W.ExecContext(ctx, `INSERT INTO pupils(id, school_id, full_name, date_of_birth) VALUES (?, 'bench', 'Bench pupil', '2019-09-01')`, r.PupilID); err != nil {
			return err
		}
		if _, err := e.svc.consent.Record(ctx, "bench", consent.Grant{PupilID: r.PupilID, GuardianName: "Bench guardian",
			PupilConsented: true, ScopeFace: true, ScopePhotos: true, DocumentRef: "BENCH-" + r.PupilID}); err != nil {
			return err
		}
	}
	return nil
}

// runBenchEnrol bulk-enrols the roster and measures the run (all but
// MeanMPx).
func runBenchEnrol(ctx context.Context, e *env, photoDir string, rows []RosterRow) (BenchResult, error) {
	var lat []float64
	var lmu sync.Mutex
	b := &Bulk{Svc: e.svc, Dir: photoDir, RunKey: "bench", Actor: "bench", Workers: e.eng.Workers(),
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
	res := BenchResult{Photos: len(lat), Workers: e.eng.Workers(), CPUs: runtime.NumCPU(), Seconds: round3(el),
		RSSMB: round3(procKB("VmRSS") / 1024), PeakRSSMB: round3(procKB("VmHWM") / 1024),
		TargetPerS: 10, Model: e.eng.Model().String(),
		Description: "bulk enrolment of the test photos (one pupil each): decode, detect, quality gates, descriptor, duplicate guard, AES-GCM store, audit"}
	if el > 0 {
		res.PhotosPerS = round3(float64(len(lat)) / el)
	}
	res.TargetMet = res.PhotosPerS >= res.TargetPerS
	if len(lat) > 0 && cpu > 0 {
		res.CPUMsPerPhoto = round3(cpu * 1000 / float64(len(lat)))
		res.EstPerS2CoresCPU = round3(2 / (cpu / float64(len(lat))))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		res.LoadAvg = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	sort.Float64s(lat)
	if len(lat) > 0 {
		res.P50Ms = round3(lat[len(lat)/2])
		res.P95Ms = round3(lat[min(len(lat)-1, int(float64(len(lat))*0.95))])
	}
	for _, r := range reps {
		res.Accepted += r.Accepted
		res.Review += r.Review
		res.Rejected += r.Rejected
	}
	return res, nil
}
