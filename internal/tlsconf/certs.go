package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// loadPair reads a certificate chain and its key (smtpd_tls_cert_file and
// smtpd_tls_key_file, or the ECDSA pair). The key file defaults to the
// certificate file in Postfix, so one PEM file may hold both.
func loadPair(certParam, certFile, keyFile string) (tls.Certificate, error) {
	if keyFile == "" {
		keyFile = certFile
	}
	cb, err := os.ReadFile(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s: %w", certParam, err)
	}
	kb, err := os.ReadFile(keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s: %w", strings.Replace(certParam, "cert_file", "key_file", 1), err)
	}
	// X509KeyPair skips the blocks it does not want, so a combined file
	// works as either argument.
	c, err := tls.X509KeyPair(cb, kb)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s %s, key %s: %w", certParam, certFile, keyFile, err)
	}
	return c, nil
}

// ParseChainFile splits one smtpd_tls_chain_files PEM file into its
// key+chain sets (postconf(5): "one or more private keys each directly
// followed by the corresponding certificate chain"). A certificate before the
// first key belongs to that key, so a file written certificate-first works.
func ParseChainFile(data []byte) ([]tls.Certificate, error) {
	type set struct{ key, certs []byte }
	var sets []*set
	var pendingCerts []byte
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		enc := pem.EncodeToMemory(b)
		switch {
		case strings.HasSuffix(b.Type, "PRIVATE KEY"):
			// A chain written before its (only) key belongs to it.
			sets = append(sets, &set{key: enc, certs: pendingCerts})
			pendingCerts = nil
		case b.Type == "CERTIFICATE":
			if len(sets) == 0 {
				pendingCerts = append(pendingCerts, enc...)
			} else {
				sets[len(sets)-1].certs = append(sets[len(sets)-1].certs, enc...)
			}
		}
	}
	if len(sets) == 0 && len(pendingCerts) > 0 {
		return nil, errors.New("certificates without a private key")
	}
	if len(sets) == 0 {
		return nil, errors.New("no private key")
	}
	var out []tls.Certificate
	for i, s := range sets {
		if len(s.certs) == 0 {
			return nil, fmt.Errorf("private key %d: no certificate follows it", i+1)
		}
		c, err := tls.X509KeyPair(s.certs, s.key)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i+1, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// loadChainFiles reads every smtpd_tls_chain_files file in order.
func loadChainFiles(files []string) ([]tls.Certificate, error) {
	var out []tls.Certificate
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("smtpd_tls_chain_files: %w", err)
		}
		cs, err := ParseChainFile(b)
		if err != nil {
			return nil, fmt.Errorf("smtpd_tls_chain_files: %s: %w", f, err)
		}
		out = append(out, cs...)
	}
	return out, nil
}

// loadCAs reads smtpd_tls_CAfile and every PEM file in smtpd_tls_CApath
// (OpenSSL reads the hashed names lazily; moat reads the directory once per
// service generation, before the jail, so reload picks up changes).
func loadCAs(file, dir string) (*x509.CertPool, error) {
	if file == "" && dir == "" {
		return nil, nil
	}
	pool := x509.NewCertPool()
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("smtpd_tls_CAfile: %w", err)
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("smtpd_tls_CAfile %s: no certificate", file)
		}
	}
	if dir != "" {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("smtpd_tls_CApath: %w", err)
		}
		for _, e := range ents {
			if e.IsDir() {
				continue
			}
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				continue // a dangling link or unreadable file, as OpenSSL skips it
			}
			pool.AppendCertsFromPEM(b)
		}
	}
	return pool, nil
}

// pickCertificate chooses among several key types by what the client
// supports (its signature algorithms and suites), ignoring the name it asked
// for: an MTA's SNI rarely matches, and Postfix does not choose by it
// without tls_server_sni_maps.
func pickCertificate(certs []tls.Certificate) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return func(chi *tls.ClientHelloInfo) (*tls.Certificate, error) {
		probe := *chi
		probe.ServerName = ""
		for i := range certs {
			if probe.SupportsCertificate(&certs[i]) == nil {
				return &certs[i], nil
			}
		}
		return &certs[0], nil
	}
}
