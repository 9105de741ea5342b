// Package procstat reads the process's own memory figures from
// /proc/self/status, for the bench commands (hub/bench/...).
package procstat
