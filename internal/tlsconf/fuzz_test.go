package tlsconf

import (
	"testing"
)

func FuzzParseProtocols(f *testing.F) {
	for _, s := range []string{">=TLSv1.2", "!SSLv2, !SSLv3, !TLSv1", "TLSv1.2:TLSv1.3", "<=TLSv1.1", ">=", "!", "tlsv1.3 >=TLSv1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		on, err := ParseProtocols(v)
		if err != nil {
			return
		}
		if len(on) != len(protoNames) {
			t.Fatalf("%d flags", len(on))
		}
		min, max, _, err := versionRange("p", v)
		if err == nil && (min < 0x0303 || max > 0x0304 || min > max) {
			t.Fatalf("%q: range %x-%x", v, min, max)
		}
	})
}

func FuzzCipherSuites(f *testing.F) {
	for _, s := range []string{"aNULL, RC4", "ECDSA:AES128", "ALL", "!+-", "ECDHE-RSA-AES128-GCM-SHA256 CHACHA20"} {
		f.Add("medium", s)
	}
	f.Fuzz(func(t *testing.T, grade, excl string) {
		ids, _, err := cipherSuites("p", grade, func(string) bool { return false }, map[string]string{"x": excl})
		if err != nil {
			return
		}
		for _, id := range ids {
			if _, bits := SuiteName(id); bits < 128 {
				t.Fatalf("weak suite %x", id)
			}
		}
	})
}

func FuzzParseChainFile(f *testing.F) {
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("junk"))
	f.Fuzz(func(t *testing.T, b []byte) {
		certs, err := ParseChainFile(b)
		if err == nil && len(certs) == 0 {
			t.Fatal("no error and no certificate")
		}
	})
}
