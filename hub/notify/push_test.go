package notify

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/hkdf"
)

// decryptAES128GCM is the user-agent side of RFC 8291 / RFC 8188,
// written here independently of webpush-go.
func decryptAES128GCM(priv *ecdh.PrivateKey, authSecret, body []byte) ([]byte, error) {
	if len(body) < 21 {
		return nil, fmt.Errorf("short body")
	}
	salt := body[:16]
	rs := binary.BigEndian.Uint32(body[16:20])
	idlen := int(body[20])
	if len(body) < 21+idlen || rs < 18 {
		return nil, fmt.Errorf("bad header")
	}
	asPublic := body[21 : 21+idlen]
	ct := body[21+idlen:]
	asKey, err := ecdh.P256().NewPublicKey(asPublic)
	if err != nil {
		return nil, fmt.Errorf("as_public: %w", err)
	}
	shared, err := priv.ECDH(asKey)
	if err != nil {
		return nil, err
	}
	uaPublic := priv.PublicKey().Bytes()
	keyInfo := append(append([]byte("WebPush: info\x00"), uaPublic...), asPublic...)
	ikm := make([]byte, 32)
	if _, err := io.ReadFull(hkdf.New(sha256.New, shared, authSecret, keyInfo), ikm); err != nil {
		return nil, err
	}
	cek := make([]byte, 16)
	nonce := make([]byte, 12)
	io.ReadFull(hkdf.New(sha256.New, ikm, salt, []byte("Content-Encoding: aes128gcm\x00")), cek)
	io.ReadFull(hkdf.New(sha256.New, ikm, salt, []byte("Content-Encoding: nonce\x00")), nonce)
	block, _ := aes.NewCipher(cek)
	gcm, _ := cipher.NewGCM(block)
	if len(ct) > int(rs) {
		return nil, fmt.Errorf("more than one record (%d > rs %d)", len(ct), rs)
	}
	pt, err := gcm.Open(nil, nonce, ct, nil)
	if err != nil {
		return nil, fmt.Errorf("decrypt: %w", err)
	}
	pt = bytes.TrimRight(pt, "\x00")
	if len(pt) == 0 || pt[len(pt)-1] != 2 {
		return nil, fmt.Errorf("missing last-record delimiter")
	}
	return pt[:len(pt)-1], nil
}

// verifyVAPID checks the ES256 JWT in "vapid t=…, k=…" against k.
func verifyVAPID(h, wantPub string) error {
	var tok, k string
	for _, part := range strings.Split(strings.TrimPrefix(h, "vapid "), ",") {
		part = strings.TrimSpace(part)
		if v, ok := strings.CutPrefix(part, "t="); ok {
			tok = v
		}
		if v, ok := strings.CutPrefix(part, "k="); ok {
			k = v
		}
	}
	if k != strings.TrimRight(wantPub, "=") {
		return fmt.Errorf("k=%q, want the hub's VAPID key %q", k, wantPub)
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return fmt.Errorf("not a JWT")
	}
	claims, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var c struct{ Sub string }
	if json.Unmarshal(claims, &c) != nil || c.Sub != "mailto:admin@localhost" {
		return fmt.Errorf("JWT sub %q, want mailto:admin@localhost", claims)
	}
	pub, _ := base64.RawURLEncoding.DecodeString(k)
	x, y := elliptic.Unmarshal(elliptic.P256(), pub)
	if x == nil {
		return fmt.Errorf("bad k")
	}
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	if len(sig) != 64 {
		return fmt.Errorf("signature length %d", len(sig))
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if !ecdsa.Verify(&ecdsa.PublicKey{Curve: elliptic.P256(), X: x, Y: y}, sum[:],
		new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		return fmt.Errorf("JWT signature does not verify")
	}
	return nil
}

func TestWebPushDecrypts(t *testing.T) {
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	authSecret := make([]byte, 16)
	rand.Read(authSecret)

	var mu sync.Mutex
	var plain [][]byte
	var vapidHdr []string
	gone := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/gone" {
			mu.Lock()
			gone = true
			mu.Unlock()
			w.WriteHeader(http.StatusGone)
			return
		}
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get("Content-Encoding") != "aes128gcm" {
			t.Errorf("Content-Encoding %q", r.Header.Get("Content-Encoding"))
		}
		pt, err := decryptAES128GCM(priv, authSecret, body)
		if err != nil {
			t.Errorf("decrypt: %v", err)
			http.Error(w, err.Error(), 400)
			return
		}
		mu.Lock()
		plain = append(plain, pt)
		vapidHdr = append(vapidHdr, r.Header.Get("Authorization"))
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
	}))
	defer srv.Close()

	cfg := Default()
	clk := newClock(monday0712)
	n, _ := newNotifier(t, cfg, clk)
	ctx := context.Background()
	b64 := base64.RawURLEncoding.EncodeToString
	if err := n.Subscribe(ctx, 1, srv.URL+"/push/abc", b64(priv.PublicKey().Bytes()), b64(authSecret)); err != nil {
		t.Fatal(err)
	}
	// A second, expired subscription is dropped on 410 Gone.
	if err := n.Subscribe(ctx, 1, srv.URL+"/gone", b64(priv.PublicKey().Bytes()), b64(authSecret)); err != nil {
		t.Fatal(err)
	}
	if err := n.Subscribe(ctx, 1, "ftp://example.com/x", "a", "b"); err == nil {
		t.Error("accepted a non-https endpoint")
	}
	insertEvent(t, n.db, pupilAn, "g1", "in", monday0712)
	if err := n.SyncOnce(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(plain) != 1 || !gone {
		t.Fatalf("pushes decrypted %d (want 1), gone endpoint called %v", len(plain), gone)
	}
	var m map[string]string
	if err := json.Unmarshal(plain[0], &m); err != nil {
		t.Fatalf("payload %q: %v", plain[0], err)
	}
	if !strings.Contains(m["body"], "Con bạn đã đến trường lúc 07:12") || m["title"] == "" {
		t.Errorf("payload %v", m)
	}
	if err := verifyVAPID(vapidHdr[0], n.VAPIDPublicKey()); err != nil {
		t.Errorf("VAPID: %v (%q)", err, vapidHdr[0])
	}
	var subs int
	n.db.R.QueryRow(`SELECT COUNT(*) FROM push_subscriptions`).Scan(&subs)
	if subs != 1 || countRows(t, n, "status = 'dropped'") != 1 {
		t.Errorf("subscriptions left %d, dropped rows %d", subs, countRows(t, n, "status = 'dropped'"))
	}
	// VAPID keys survive a restart (same database).
	n2, err := New(ctx, cfg, n.db, testLog(t), clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	if n2.VAPIDPublicKey() != n.VAPIDPublicKey() {
		t.Error("VAPID key changed on restart")
	}
}
