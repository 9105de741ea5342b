package publish

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/diemdanh/diemdanh/edge/publish/brokertest"
)

// selfSigned makes a CA-signed server certificate for 127.0.0.1 and
// returns the server TLS config and the CA's PEM file.
func selfSigned(t *testing.T) (*tls.Config, string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "diemdanh test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}, caFile
}

// TestTLS: with ca_file the gate verifies the broker's certificate and
// delivers; without it (system roots) the handshake fails and every event
// stays in the outbox.
func TestTLS(t *testing.T) {
	tc, caFile := selfSigned(t)
	addr, _ := brokertest.FreePort()
	rec, _ := brokertest.NewRecorder("")
	srv, err := brokertest.StartMochiTLS(addr, tc, rec, brokertest.Users{gate: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { brokertest.CloseMochi(srv, 3*time.Second) })
	db := openStore(t)
	for i := 0; i < 3; i++ {
		if err := db.Enqueue(context.Background(), newEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	cfg := testConfig(addr)
	cfg.Broker = "ssl://" + addr
	cfg.Username, cfg.Password = gate, "pw"

	untrusted, err := New(cfg, db, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, untrusted)
	time.Sleep(500 * time.Millisecond)
	stop()
	if untrusted.Connected() || db.Depth() != 3 || len(rec.IDs()) != 0 {
		t.Fatalf("untrusted broker: connected=%v depth=%d", untrusted.Connected(), db.Depth())
	}

	cfg.CAFile = caFile
	p, err := New(cfg, db, testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	run(t, p)
	waitFor(t, 10*time.Second, "drain over TLS", func() bool { return db.Depth() == 0 })
	if len(rec.IDs()) < 3 {
		t.Fatalf("broker recorded %d events", len(rec.IDs()))
	}
}
