package benchutil

// #include <malloc.h>
import "C"

// CHeapMB is glibc's account of the C heap (OpenCV, dlib and SQLite
// allocate there, not in the Go heap), in MB: the bytes allocated and not
// freed (in use, mmapped blocks included) and the bytes freed but kept in
// the arenas (free). In use growing from one school day to the next is a
// leak; free growing is fragmentation.
func CHeapMB() (inUse, free float64) {
	mi := C.mallinfo2()
	const mb = 1 << 20
	return float64(mi.uordblks+mi.hblkhd) / mb, float64(mi.fordblks) / mb
}

// TrimCHeap hands the C heap's freed pages back to the system (glibc's
// malloc_trim), so that a resident set read afterwards is what the process
// still holds.
func TrimCHeap() { C.malloc_trim(0) }
