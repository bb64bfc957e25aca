// Package tlsconftest makes throw-away certificates for tests: a CA, server
// certificates with RSA and ECDSA keys, and client certificates signed by
// the CA or self-signed, written as PEM files the way admins keep them
// (keys mode 0600).
package tlsconftest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Cert is one certificate and key, in memory and on disk.
type Cert struct {
	Cert     *x509.Certificate
	Key      crypto.Signer
	CertPEM  []byte
	KeyPEM   []byte
	CertFile string
	KeyFile  string
}

// Kind selects the key algorithm.
type Kind int

// Key algorithms.
const (
	RSA Kind = iota
	ECDSA
)

func newKey(t testing.TB, k Kind) crypto.Signer {
	t.Helper()
	var key crypto.Signer
	var err error
	if k == RSA {
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// New makes a certificate for cn signed by ca (self-signed when ca is nil;
// isCA makes it a CA) and writes NAME.crt and NAME.key (0600) in dir.
func New(t testing.TB, dir, name, cn string, k Kind, ca *Cert, isCA bool) *Cert {
	t.Helper()
	key := newKey(t, k)
	sn, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		DNSNames:     []string{cn},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if isCA {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
		tmpl.ExtKeyUsage = nil
	}
	parent, signer := tmpl, key
	if ca != nil {
		parent, signer = ca.Cert, ca.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	c := &Cert{
		Cert: cert, Key: key,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
	}
	if dir != "" {
		c.CertFile = filepath.Join(dir, name+".crt")
		c.KeyFile = filepath.Join(dir, name+".key")
		if err := os.WriteFile(c.CertFile, c.CertPEM, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(c.KeyFile, c.KeyPEM, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return c
}
