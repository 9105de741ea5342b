package enrol

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/consent"
	"github.com/diemdanh/diemdanh/hub/facetemplates"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/diemdanh/diemdanh/models/faceengine"
	"github.com/diemdanh/diemdanh/models/match"
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

// openEnv opens the hub database, the template store and a face engine
// for cfg's model, or for the model an admin switched the hub to
// (ApplyChoice), so `hub enrol` makes the templates the hub serves.
func openEnv(ctx context.Context, dbPath, keyFile, models string, cfg Config, workers int, log *slog.Logger) (*env, error) {
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
	if cfg, _, err = ApplyChoice(ctx, e.db, cfg); err != nil {
		e.close()
		return nil, err
	}
	ecfg := cfg.EngineConfig()
	if models != "" {
		ecfg.ModelsDir = conf.ResolveModelsDir(models)
	}
	ecfg.Workers = workers
	if e.eng, err = faceengine.NewEngine(ecfg, log); err != nil {
		e.close()
		return nil, err
	}
	al := audit.New(e.db, log, time.Now)
	reg := consent.New(e.db, tpl, al, log, time.Now)
	if e.svc, err = New(e.db, e.eng, tpl, reg, al, cfg, log, time.Now); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

// EnrolMain is `hub enrol --roster roster.csv --photos DIR` with a
// built-in embedder (--embedder); EnrolCommand adds --config.
func EnrolMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return enrolMain(ctx, args, stdout, stderr, nil)
}

// EnrolCommand is `hub enrol` that also takes --config hub.yaml: load
// returns the file's enrol section (the model, a custom block and its
// profile, the distances), which a school on a custom model needs.
func EnrolCommand(load func(path string) (Config, error)) func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		return enrolMain(ctx, args, stdout, stderr, load)
	}
}

// enrolConfig is the enrol section `hub enrol` runs with: the config
// file's when --config is given (then --embedder may not be), else the
// defaults with --embedder.
func enrolConfig(fs *flag.FlagSet, path, embedder string, load func(string) (Config, error)) (Config, error) {
	embedderSet := false
	fs.Visit(func(f *flag.Flag) { embedderSet = embedderSet || f.Name == "embedder" })
	switch {
	case path == "":
		c := DefaultConfig()
		c.Embedder = embedder
		return c, nil
	case load == nil:
		return Config{}, fmt.Errorf("%w: --config is not supported here", ErrUsage)
	case embedderSet:
		return Config{}, fmt.Errorf("%w: with --config the model is the config's enrol section: drop --embedder", ErrUsage)
	}
	c, err := load(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	return c, nil
}

func enrolMain(ctx context.Context, args []string, stdout, stderr io.Writer, load func(string) (Config, error)) error {
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
	embedder := fs.String("embedder", match.DefaultEmbedder.Name, "face model: the hub's enrol.embedder (one of "+strings.Join(faceengine.EmbedderNames(), ", ")+"); a custom model through --config")
	config := fs.String("config", "", "the hub's config file: its enrol section (model, custom block and profile, distances)")
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
	cfg, err := enrolConfig(fs, *config, *embedder, load)
	if err != nil {
		return err
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
	e, err := openEnv(ctx, *dbPath, *keyFile, *models, cfg, *workers, log)
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

// Env is the enrolment environment `hub enrol` runs in (hub database,
// face engine, enrolment service and consent registry), for a harness
// outside this package (hub/bench/enrol). Close releases it.
type Env struct {
	DB      *store.DB
	Engine  *faceengine.Engine
	Service *Service
	Consent *consent.Registry
	e       *env
}

// OpenEnv opens the environment `hub enrol` uses on the database dbPath
// with the template key keyFile, the models folder (conf.ResolveModelsDir)
// and the default embedder; workers 0 is one per CPU.
func OpenEnv(ctx context.Context, dbPath, keyFile, models string, workers int, log *slog.Logger) (*Env, error) {
	e, err := openEnv(ctx, dbPath, keyFile, models, DefaultConfig(), workers, log)
	if err != nil {
		return nil, err
	}
	return &Env{DB: e.db, Engine: e.eng, Service: e.svc, Consent: e.svc.consent, e: e}, nil
}

// Close closes the engine and the database.
func (e *Env) Close() { e.e.close() }
