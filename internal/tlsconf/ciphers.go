package tlsconf

import (
	"crypto/tls"
	"fmt"
	"strings"
)

// suite is one cipher suite moat may offer, with its OpenSSL name (what
// Postfix logs and what cipher exclusion lists name) and the OpenSSL
// aliases that select it (ciphers(1)).
type suite struct {
	id      uint16
	openssl string
	bits    int
	aliases []string
}

// tls12Suites are the only TLS 1.2 suites moat offers: ECDHE key exchange
// (forward secrecy) with an AEAD cipher. RC4, 3DES, CBC with SHA-1 or
// SHA-256 and static RSA key exchange are never offered, whatever a grade
// says. TLS 1.3's suites are Go's own and not configurable (nor does
// OpenSSL's cipher list, and so Postfix's, touch them).
var tls12Suites = []suite{
	{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, "ECDHE-ECDSA-AES256-GCM-SHA384", 256,
		[]string{"aECDSA", "ECDSA", "AES", "AES256", "AESGCM", "SHA384"}},
	{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, "ECDHE-RSA-AES256-GCM-SHA384", 256,
		[]string{"aRSA", "AES", "AES256", "AESGCM", "SHA384"}},
	{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305, "ECDHE-ECDSA-CHACHA20-POLY1305", 256,
		[]string{"aECDSA", "ECDSA", "CHACHA20", "SHA256"}},
	{tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305, "ECDHE-RSA-CHACHA20-POLY1305", 256,
		[]string{"aRSA", "CHACHA20", "SHA256"}},
	{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, "ECDHE-ECDSA-AES128-GCM-SHA256", 128,
		[]string{"aECDSA", "ECDSA", "AES", "AES128", "AESGCM", "SHA256"}},
	{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, "ECDHE-RSA-AES128-GCM-SHA256", 128,
		[]string{"aRSA", "AES", "AES128", "AESGCM", "SHA256"}},
}

// commonAliases select every suite in tls12Suites.
var commonAliases = []string{"ALL", "DEFAULT", "HIGH", "ECDH", "ECDHE", "EECDH", "kECDHE", "kEECDH", "AEAD", "TLSv1.2"}

// absentAliases are OpenSSL aliases (ciphers(1)) that select none of the
// suites moat offers: excluding them changes nothing and is not worth a
// warning.
var absentAliases = []string{
	"aNULL", "eNULL", "NULL", "COMPLEMENTOFALL", "COMPLEMENTOFDEFAULT", "EXPORT", "EXP",
	"EXPORT40", "EXPORT56", "LOW", "MEDIUM", "RC4", "RC2", "DES", "3DES", "IDEA", "SEED",
	"MD5", "SHA1", "SHA", "kRSA", "RSA", "aDSS", "DSS", "DHE", "EDH", "kDHE", "kEDH", "DH",
	"kDH", "kDHr", "kDHd", "ADH", "AECDH", "aECDH", "kECDH", "kECDHr", "kECDHe", "PSK",
	"kPSK", "kECDHEPSK", "kDHEPSK", "kRSAPSK", "aPSK", "SRP", "kSRP", "CAMELLIA",
	"CAMELLIA128", "CAMELLIA256", "ARIA", "ARIA128", "ARIA256", "CCM", "CCM8", "AESCCM",
	"AESCCM8", "GOST94", "GOST89MAC", "kGOST", "aGOST", "aGOST01", "SSLv3", "TLSv1",
	"TLSv1.0", "SUITEB128", "SUITEB128ONLY", "SUITEB192", "CBC",
}

// grades are the values of smtpd_tls_ciphers and its mandatory twin, with
// the tls_*_cipherlist each names.
var grades = map[string]string{
	"high": "tls_high_cipherlist", "medium": "tls_medium_cipherlist",
	"low": "tls_low_cipherlist", "export": "tls_export_cipherlist", "null": "tls_null_cipherlist",
}

// cipherSuites maps a cipher grade and exclusion lists onto the TLS 1.2
// suites moat offers. Every grade yields the same AEAD set (all of it is
// OpenSSL's HIGH); a weaker grade or a custom OpenSSL cipher list is a
// warning. Exclusions remove suites by OpenSSL name or alias.
func cipherSuites(gradeParam, grade string, customList func(name string) bool, excl map[string]string) ([]uint16, []string, error) {
	var warnings []string
	list, ok := grades[strings.ToLower(strings.TrimSpace(grade))]
	if !ok {
		return nil, nil, fmt.Errorf("%s: invalid cipher grade %q", gradeParam, grade)
	}
	switch strings.ToLower(strings.TrimSpace(grade)) {
	case "low", "export", "null":
		warnings = append(warnings, fmt.Sprintf("%s = %s: moat offers only its HIGH grade AEAD suites", gradeParam, grade))
	}
	if customList(list) {
		warnings = append(warnings, fmt.Sprintf("%s: an OpenSSL cipher list cannot be mapped onto Go's crypto/tls; moat's own suites apply", list))
	}
	drop := map[uint16]bool{}
	for param, v := range excl {
		for _, tok := range splitTokens(v) {
			tok = strings.TrimLeft(tok, "!-+")
			matched, known := excludes(tok)
			if !known {
				warnings = append(warnings, fmt.Sprintf("%s: %q is no cipher or alias moat knows; ignored", param, tok))
			}
			for _, id := range matched {
				drop[id] = true
			}
		}
	}
	var ids []uint16
	for _, s := range tls12Suites {
		if !drop[s.id] {
			ids = append(ids, s.id)
		}
	}
	return ids, warnings, nil
}

// excludes returns the suites an exclusion token names, and whether the
// token is known at all (an OpenSSL suite name with a dash is taken as
// known: excluding a suite moat never offers is fine).
func excludes(tok string) ([]uint16, bool) {
	var ids []uint16
	for _, a := range commonAliases {
		if strings.EqualFold(a, tok) {
			for _, s := range tls12Suites {
				ids = append(ids, s.id)
			}
			return ids, true
		}
	}
	known := false
	for _, s := range tls12Suites {
		if strings.EqualFold(s.openssl, tok) || strings.EqualFold(tls.CipherSuiteName(s.id), tok) {
			ids = append(ids, s.id)
			known = true
			continue
		}
		for _, a := range s.aliases {
			if a == tok {
				ids = append(ids, s.id)
				known = true
			}
		}
	}
	if known {
		return ids, true
	}
	for _, a := range absentAliases {
		if strings.EqualFold(a, tok) {
			return nil, true
		}
	}
	return nil, strings.Contains(tok, "-") || strings.Contains(tok, "_")
}

// SuiteName is a negotiated suite as Postfix logs it (OpenSSL's name; TLS
// 1.3 names are the same as IANA's), with the symmetric key size.
func SuiteName(id uint16) (string, int) {
	for _, s := range tls12Suites {
		if s.id == id {
			return s.openssl, s.bits
		}
	}
	switch id {
	case tls.TLS_AES_128_GCM_SHA256:
		return "TLS_AES_128_GCM_SHA256", 128
	case tls.TLS_AES_256_GCM_SHA384:
		return "TLS_AES_256_GCM_SHA384", 256
	case tls.TLS_CHACHA20_POLY1305_SHA256:
		return "TLS_CHACHA20_POLY1305_SHA256", 256
	}
	return tls.CipherSuiteName(id), 0
}

// KeyExchange names the key exchange group as Postfix 3.4+ logs it:
// "X25519", or "ECDHE" with the curve's OpenSSL short name.
func KeyExchange(c tls.CurveID) string {
	switch c {
	case 0:
		return ""
	case tls.X25519:
		return "X25519"
	case tls.CurveP256:
		return "ECDHE (prime256v1)"
	case tls.CurveP384:
		return "ECDHE (secp384r1)"
	case tls.CurveP521:
		return "ECDHE (secp521r1)"
	case tls.X25519MLKEM768:
		return "X25519MLKEM768"
	}
	return c.String()
}
