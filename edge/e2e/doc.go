// Package e2e holds the edge's durability tests with real processes: a
// gate process (the test binary re-executed as a helper that feeds
// deterministic events through the real store and publisher) and a real
// broker process (Debian's mosquitto, or embedded mochi-mqtt in a child
// process), each killed with SIGKILL and restarted by the tests.
package e2e
