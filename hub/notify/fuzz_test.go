package notify

import (
	"strconv"
	"testing"
	"time"
)

// FuzzVerify: only the exact signature of the exact body verifies, and
// nothing panics on hostile headers.
func FuzzVerify(f *testing.F) {
	f.Add("1700000000", "sha256=00", []byte(`{"rule":"arrival"}`))
	f.Add("", "", []byte{})
	f.Add("-1", "sha256=", []byte("\x00\xff"))
	const secret = "fuzz-secret-0123456789"
	f.Fuzz(func(t *testing.T, ts, sig string, body []byte) {
		now := time.Unix(1700000000, 0)
		if Verify(secret, ts, sig, body, now, time.Hour) == nil {
			n, _ := strconv.ParseInt(ts, 10, 64)
			if sig != Sign(secret, n, body) {
				t.Fatalf("accepted a wrong signature %q", sig)
			}
		}
		good := Sign(secret, now.Unix(), body)
		if err := Verify(secret, strconv.FormatInt(now.Unix(), 10), good, body, now, time.Hour); err != nil {
			t.Fatalf("rejected a good signature: %v", err)
		}
		if Verify(secret, strconv.FormatInt(now.Unix(), 10), good, append(body, 'x'), now, time.Hour) == nil {
			t.Fatal("a changed body verified")
		}
	})
}
