package pipeline

import (
	"errors"
	"image"
	"math"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/models/conf"
)

// sq is a square face box of side s at (x, y).
func sq(x, y, s int) image.Rectangle { return image.Rect(x, y, x+s, y+s) }

// TestTrackerMaxScaleChange: a detection continues a track only when its
// width is within MaxScaleChange of the track's last box (either way).
// The first case is the gate's failure it guards against: a stale large
// track of a pupil who passed (missed for a few frames) would capture the
// next, smaller face that overlaps it; with the check a new track starts.
func TestTrackerMaxScaleChange(t *testing.T) {
	cases := []struct {
		name     string
		ratio    float64
		first    image.Rectangle
		missed   int // passes with no detection between the two
		second   image.Rectangle
		sameWant bool
	}{
		// IoU 120²/200² = 0.36 ≥ MinIoU, width ratio 1.67.
		{"stale large track vs small newcomer", 1.33, sq(400, 100, 200), 3, sq(440, 140, 120), false},
		{"same, check off (0): captured", 0, sq(400, 100, 200), 3, sq(440, 140, 120), true},
		{"small track vs large newcomer", 1.33, sq(440, 140, 120), 0, sq(400, 100, 200), false},
		{"normal growth 1.25", 1.33, sq(300, 300, 100), 0, sq(290, 290, 125), true},
		{"growth at the limit", 1.33, sq(300, 300, 100), 0, sq(290, 290, 133), true},
		{"growth just over the limit", 1.33, sq(300, 300, 100), 0, sq(290, 290, 134), false},
		{"shrink within the ratio", 1.33, sq(290, 290, 125), 0, sq(300, 300, 100), true},
		{"looser ratio lets the newcomer in", 2, sq(400, 100, 200), 3, sq(440, 140, 120), true},
	}
	t0 := time.Unix(1_800_000_000, 0)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if IoU(c.first, c.second) < 0.3 {
				t.Fatalf("case broken: IoU %.2f below MinIoU, the scale check would not matter", IoU(c.first, c.second))
			}
			tr := NewTracker(TrackerConfig{MinIoU: 0.3, MaxMissed: 8, MaxScaleChange: c.ratio})
			as, _ := tr.Update([]image.Rectangle{c.first}, 0, t0)
			id := as[0].ID
			for i := 1; i <= c.missed; i++ {
				tr.Update(nil, int64(i), t0.Add(time.Duration(i)*40*time.Millisecond))
			}
			f := int64(c.missed + 1)
			as, _ = tr.Update([]image.Rectangle{c.second}, f, t0.Add(time.Duration(f)*40*time.Millisecond))
			if same := as[0].ID == id; same != c.sameWant {
				t.Fatalf("second detection continued the track: %v, want %v (ids %d, %d)", same, c.sameWant, id, as[0].ID)
			}
			wantActive := 2
			if c.sameWant {
				wantActive = 1
			}
			if n := len(tr.Active()); n != wantActive {
				t.Fatalf("%d active tracks, want %d", n, wantActive)
			}
		})
	}
}

// A pupil walking up grows a few percent per frame: with the default
// config the track is followed from 90 px to 300 px without a restart.
func TestTrackerDefaultFollowsGrowingFace(t *testing.T) {
	tr := NewTracker(DefaultTrackerConfig())
	t0 := time.Unix(1_800_000_000, 0)
	var id int64
	s := 90.0
	for f := 0; s < 300; f++ {
		b := sq(640-int(s)/2, 200, int(s))
		as, _ := tr.Update([]image.Rectangle{b}, int64(f), t0.Add(time.Duration(f)*40*time.Millisecond))
		if f == 0 {
			id = as[0].ID
		} else if as[0].ID != id {
			t.Fatalf("frame %d (%.0f px): track restarted", f, s)
		}
		s *= 1.06
	}
}

func fieldOf(err error) string {
	var fe *conf.FieldError
	if errors.As(err, &fe) {
		return fe.Field
	}
	return ""
}

func TestConfigValidateScaleAndFine(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(*Config)
		field string // "" = valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"scale off", func(c *Config) { c.Tracker.MaxScaleChange = 0 }, ""},
		{"scale 10", func(c *Config) { c.Tracker.MaxScaleChange = 10 }, ""},
		{"scale 1", func(c *Config) { c.Tracker.MaxScaleChange = 1 }, "pipeline.tracker.max_scale_change"},
		{"scale below 1", func(c *Config) { c.Tracker.MaxScaleChange = 0.75 }, "pipeline.tracker.max_scale_change"},
		{"scale negative", func(c *Config) { c.Tracker.MaxScaleChange = -1.3 }, "pipeline.tracker.max_scale_change"},
		{"scale huge", func(c *Config) { c.Tracker.MaxScaleChange = 11 }, "pipeline.tracker.max_scale_change"},
		{"scale NaN", func(c *Config) { c.Tracker.MaxScaleChange = math.NaN() }, "pipeline.tracker.max_scale_change"},
		{"fine area 0", func(c *Config) { c.FineMaxArea = 0 }, "pipeline.fine_max_area"},
		{"fine area over 1", func(c *Config) { c.FineMaxArea = 1.5 }, "pipeline.fine_max_area"},
		{"fine area NaN", func(c *Config) { c.FineMaxArea = math.NaN() }, "pipeline.fine_max_area"},
		{"fine area 1", func(c *Config) { c.FineMaxArea = 1 }, ""},
		{"fine windows 0", func(c *Config) { c.FineMaxWindows = 0 }, "pipeline.fine_max_windows"},
		{"fine windows 65", func(c *Config) { c.FineMaxWindows = 65 }, "pipeline.fine_max_windows"},
		{"fine off ignores its bounds", func(c *Config) { c.FineDetect, c.FineMaxArea, c.FineMaxWindows = false, 0, 0 }, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig()
			c.edit(&cfg)
			err := cfg.Validate("pipeline")
			if c.field == "" {
				if err != nil {
					t.Fatalf("valid config refused: %v", err)
				}
				return
			}
			if got := fieldOf(err); got != c.field {
				t.Fatalf("err = %v (field %q), want field %q", err, got, c.field)
			}
		})
	}
}
