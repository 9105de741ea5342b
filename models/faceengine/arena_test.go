package faceengine

import (
	"image"
	"os"
	"runtime"
	"sync"
	"testing"

	"gocv.io/x/gocv"
)

// OpenCV work from many OS threads at once stays within two malloc arenas
// (hog.cc's constructor; MALLOC_ARENA_MAX, when set, decides instead).
func TestMallocArenasCapped(t *testing.T) {
	if v, ok := os.LookupEnv("MALLOC_ARENA_MAX"); ok {
		t.Logf("MALLOC_ARENA_MAX=%s set by the environment; checking the default anyway", v)
	}
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread() // 16 distinct threads allocating at once
			defer runtime.UnlockOSThread()
			for i := 0; i < 200; i++ {
				m := gocv.NewMatWithSize(64+i, 64+i, gocv.MatTypeCV8UC3)
				r := gocv.NewMat()
				gocv.Resize(m, &r, image.Pt(300, 200), 0, 0, gocv.InterpolationLinear)
				r.Close()
				m.Close()
			}
		}()
	}
	wg.Wait()
	n := mallocArenas()
	t.Logf("%d malloc arenas", n)
	if _, set := os.LookupEnv("MALLOC_ARENA_MAX"); !set && (n < 1 || n > 2) {
		t.Fatalf("%d malloc arenas after 16 threads allocated at once, want at most 2", n)
	}
}
