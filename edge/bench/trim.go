package bench

// #include <malloc.h>
import "C"

// releaseFreedMemory hands the C heap's freed pages back to the system
// (glibc's malloc_trim) after each school day, so that the day log's
// resident set is what the process still holds. It keeps the first days'
// peak lower (363 MB over days 1–4 against 389 MB without); the resident
// set still grows about 2.5 MB a day in the C heap over the 24 days
// (deploy/PERFORMANCE.md, "Memory over the days").
func releaseFreedMemory() { C.malloc_trim(0) }
