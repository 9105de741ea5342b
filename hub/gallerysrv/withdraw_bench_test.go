package gallerysrv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/hub/api"
	"github.com/diemdanh/diemdanh/hub/audit"
	"github.com/diemdanh/diemdanh/hub/consent"
	"github.com/diemdanh/diemdanh/hub/facetemplates"
	"github.com/diemdanh/diemdanh/hub/roster"
	"github.com/diemdanh/diemdanh/hub/store"
	"github.com/diemdanh/diemdanh/models/match"
	"github.com/diemdanh/diemdanh/models/wire"
	"golang.org/x/crypto/bcrypt"
)

// announceWait is an Announcer that wakes waiters on every announcement.
type announceWait struct {
	mu sync.Mutex
	v  int64
	ch chan struct{}
}

func (a *announceWait) Announce(_ context.Context, _ string, x wire.GalleryAnnounce) error {
	a.mu.Lock()
	a.v = x.Version
	close(a.ch)
	a.ch = make(chan struct{})
	a.mu.Unlock()
	return nil
}

func (a *announceWait) next() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ch
}

// bigSchool enrols n pupils of 3 synthetic unit descriptors each (128-d,
// clustered per pupil as BenchmarkCalibrate's) in one transaction.
func bigSchool(b *testing.B, ctx context.Context, db *store.DB, tpl *facetemplates.Store, n int) []string {
	rng := mrand.New(mrand.NewPCG(3, 5))
	ids := make([]string, n)
	err := db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO schools(id, name) VALUES ('big', 'Trường lớn')`); err != nil {
			return err
		}
		for i := range ids {
			ids[i] = fmt.Sprintf("%012d", 100000000000+i)
			if _, err := tx.ExecContext(ctx, `INSERT INTO pupils(id, school_id, full_name) VALUES (?, 'big', 'Học sinh')`, ids[i]); err != nil {
				return err
			}
			c := randUnit(rng, 128, nil, 0)
			for k := 0; k < 3; k++ {
				t := facetemplates.New{PupilID: ids[i], Descriptor: randUnit(rng, 128, c, 0.35), Model: match.DlibResNetV1}
				if _, _, err := tpl.AddTx(ctx, tx, t); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return ids
}

// BenchmarkWithdrawal5000Pupils measures, at a school of 5,000 pupils with
// 3 templates each (15,000 synthetic descriptors), the time from
// consent.Registry.Withdraw to the gallery a gate downloads (HTTP, its
// basic auth) lacking the pupil: published_ms. The gallery server runs
// its worker (Run) as the hub does. calibrated_s is the time until the
// calibrated gallery follows (the calibration a withdrawal does not
// wait for), calibration_s the first gallery's calibration.
func BenchmarkWithdrawal5000Pupils(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db, err := store.Open(ctx, filepath.Join(b.TempDir(), "hub.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	key := make([]byte, facetemplates.KeySize)
	rand.Read(key)
	tpl, err := facetemplates.Open(db, key, nil, time.Now)
	if err != nil {
		b.Fatal(err)
	}
	tpl.SetModel(match.DlibResNetV1)
	ids := bigSchool(b, ctx, db, tpl, 5000)
	rs := roster.New(db, nil, time.Now)
	rs.BcryptCost = bcrypt.MinCost
	creds, err := rs.CreateGate(ctx, roster.Gate{ID: "g1", SchoolID: "big"})
	if err != nil {
		b.Fatal(err)
	}
	ann := &announceWait{ch: make(chan struct{})}
	srv := New(db, tpl, ann, Default(), nil, time.Now)
	tpl.Subscribe(func(school string, _ int64) { srv.Changed(ctx, school) })
	a := api.NewServer(nil, nil, nil)
	srv.Routes(a.V1)
	ts := httptest.NewServer(a.Engine)
	defer ts.Close()
	fetch := func() string {
		req, _ := http.NewRequest("GET", ts.URL+"/api/v1/gates/g1/gallery", nil)
		req.SetBasicAuth(creds.Username, creds.Password)
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer r.Body.Close()
		body, _ := io.ReadAll(r.Body)
		return string(body)
	}
	begin := time.Now()
	if _, _, _, err := srv.Current(ctx, "big"); err != nil {
		b.Fatal(err)
	}
	first := time.Since(begin)
	go srv.Run(ctx)
	reg := consent.New(db, tpl, audit.New(db, nil, time.Now), nil, time.Now)
	var published, calibrated time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		pupil := ids[(i*7)%len(ids)]
		begin := time.Now()
		if _, err := reg.Withdraw(ctx, "parent:bench", pupil, "bench"); err != nil {
			b.Fatal(err)
		}
		for body := fetch(); strings.Contains(body, `"`+pupil+`"`); body = fetch() {
			select {
			case <-ann.next():
			case <-time.After(10 * time.Second):
				b.Fatalf("withdrawal %d not published within 10 s", i)
			}
		}
		published += time.Since(begin)
		b.StopTimer()
		if _, err := srv.Settle(ctx, "big"); err != nil {
			b.Fatal(err)
		}
		calibrated += time.Since(begin)
		b.StartTimer()
	}
	b.ReportMetric(float64(published.Milliseconds())/float64(b.N), "published_ms")
	b.ReportMetric(calibrated.Seconds()/float64(b.N), "calibrated_s")
	b.ReportMetric(first.Seconds(), "calibration_s")
}
