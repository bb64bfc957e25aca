package sasl

import (
	"encoding/hex"
	"strings"
	"testing"
)

// Vectors printed by Dovecot's own `doveadm pw -p secret` (dovecot-core
// 2.3, Debian): moat reads the same value syntax.
const (
	dovecotCRAM   = "{CRAM-MD5}cd3ba7deaad6e5ca23448ba42e379747a9e0f7f1fbc00c8a81bbaac395731b56"
	dovecotSCRAM  = "{SCRAM-SHA-256}4096,Sq/2LAMTg1QN/tiP9p4YHg==,Mt8WW8e7bb4zIalMd5iO/fDdsJOlb+F4ar9OXLnkb2I=,ISxbrJrMsRVk6k6NccgrEQxATM9gJ13fzgrkhGfxlMI="
	dovecotArgon  = "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$Aj9aDlE2lpkyEX7H9IjT4w$/6+CttK+2C0JdtCcGbmGiKR4NDFy5AbdENdG/vUfYyQ"
	dovecotBcrypt = "{BLF-CRYPT}$2y$05$TX8FpZWLOA7ejOnK18yHre8aFS9cLgCfXeluRbO0NZITq9BUf52UW"
)

func TestDovecotVectors(t *testing.T) {
	for _, v := range []string{dovecotSCRAM, dovecotArgon, dovecotBcrypt, strings.TrimPrefix(dovecotArgon, "{ARGON2ID}"), strings.TrimPrefix(dovecotBcrypt, "{BLF-CRYPT}")} {
		c, err := ParseCredentials(v)
		if err != nil {
			t.Fatalf("%.20s: %v", v, err)
		}
		if !c.VerifyPassword([]byte("secret")) {
			t.Errorf("%.20s: secret refused", v)
		}
		if c.VerifyPassword([]byte("Secret")) {
			t.Errorf("%.20s: wrong password accepted", v)
		}
	}
	ctx, err := cramContext([]byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	if got := "{CRAM-MD5}" + hex.EncodeToString(ctx[:]); got != dovecotCRAM {
		t.Errorf("CRAM-MD5 context %s, Dovecot's %s", got, dovecotCRAM)
	}
}

// RFC 2195 §2's example: user tim, password tanstaaftanstaaf.
func TestCRAMRFC2195(t *testing.T) {
	ctx, err := cramContext([]byte("tanstaaftanstaaf"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := cramDigest(&ctx, []byte("<1896.697170952@postoffice.reston.mci.net>"))
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(d); got != "b913a602c7eda7a495b4e6e7334d3890" {
		t.Errorf("digest %s", got)
	}
}

func TestNewCredentialsRoundTrip(t *testing.T) {
	v, err := NewCredentials([]byte("pässword"), HashOptions{Memory: 64, Time: 1, SCRAM: true, CRAM: true})
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseCredentials(v)
	if err != nil {
		t.Fatal(err)
	}
	if !c.HasCRAM() || !c.HasSCRAM() || !c.VerifyPassword([]byte("pässword")) || c.VerifyPassword([]byte("password")) {
		t.Errorf("round trip of %q failed", v)
	}
}

func TestParseCredentialsErrors(t *testing.T) {
	for _, v := range []string{"", "secret", "{PLAIN}secret", "{CRAM-MD5}abc", "$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"{SCRAM-SHA-256}1,c2FsdHNhbHQ=,a,b", "$2y$99$xx", "{ARGON2ID"} {
		if _, err := ParseCredentials(v); err == nil {
			t.Errorf("%q accepted", v)
		} else if strings.Contains(err.Error(), "secret") {
			t.Errorf("error shows the secret: %v", err)
		}
	}
}

func TestSecurityOptions(t *testing.T) {
	all := []Mech{{SCRAMSHA256, FlagMutualAuth}, {CRAMMD5, FlagDictionary | FlagActive}, {Plain, FlagPlaintext}, {Login, FlagPlaintext}}
	names := func(o string) string {
		so, err := ParseSecurityOptions(o)
		if err != nil {
			t.Fatal(err)
		}
		var n []string
		for _, m := range so.Filter(all) {
			n = append(n, m.Name)
		}
		return strings.Join(n, " ")
	}
	for o, want := range map[string]string{
		"noanonymous":              "SCRAM-SHA-256 CRAM-MD5 PLAIN LOGIN",
		"noanonymous, noplaintext": "SCRAM-SHA-256 CRAM-MD5",
		"noplaintext nodictionary": "SCRAM-SHA-256",
		"noactive":                 "SCRAM-SHA-256 PLAIN LOGIN",
		"mutual_auth":              "SCRAM-SHA-256",
		"":                         "SCRAM-SHA-256 CRAM-MD5 PLAIN LOGIN",
	} {
		if got := names(o); got != want {
			t.Errorf("%q: %q, want %q", o, got, want)
		}
	}
	if _, err := ParseSecurityOptions("noplaintxt"); err == nil {
		t.Error("typo accepted")
	}
}
