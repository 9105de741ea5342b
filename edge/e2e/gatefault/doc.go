// Package gatefault holds the gate's fault tests against a hub, with real
// processes: the real bin/edge, and the hub's store, ingest, attendance,
// audit log and embedded broker in a helper process (the test binary
// re-executed). TestFaultDiskFull runs the gate on a small filesystem
// that fills up; TestFaultClockSkew runs it with its clock minutes off.
package gatefault
