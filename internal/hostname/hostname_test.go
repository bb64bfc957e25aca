package hostname

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"moat/internal/testutil"
)

// TestPostfixVector reproduces Postfix's util/valid_hostname test driver
// on valid_hostname.in: each line is announced with "testing:", then
// checked as a host name and as an address, each failure printed as a
// warning. The output must equal valid_hostname.ref byte for byte.
func TestPostfixVector(t *testing.T) {
	dir := filepath.Join(testutil.PostfixTests(t), "util")
	in, err := os.ReadFile(filepath.Join(dir, "valid_hostname.in"))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := os.ReadFile(filepath.Join(dir, "valid_hostname.ref"))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	sc := bufio.NewScanner(strings.NewReader(string(in)))
	for sc.Scan() {
		line := sc.Text()
		b.WriteString("./valid_hostname: testing: \"" + line + "\"\n")
		if err := Check(line); err != nil {
			b.WriteString("./valid_hostname: warning: " + err.Error() + "\n")
		}
		if err := CheckAddr(line); err != nil {
			b.WriteString("./valid_hostname: warning: " + err.Error() + "\n")
		}
	}
	if got := b.String(); got != string(ref) {
		gl, wl := strings.Split(got, "\n"), strings.Split(string(ref), "\n")
		for i := range min(len(gl), len(wl)) {
			if gl[i] != wl[i] {
				t.Fatalf("line %d differs:\n got %s\nwant %s", i+1, gl[i], wl[i])
			}
		}
		t.Fatalf("output has %d lines, ref %d", len(gl), len(wl))
	}
}

func TestCheck(t *testing.T) {
	long := strings.Repeat("a.", 127) + "bc" // 256 bytes
	for name, want := range map[string]string{
		"mail.example.com": "",
		"a_b.example":      "",
		"xn--bcher-kva.de": "",
		"host.123":         "",
		"a..b":             "valid_hostname: misplaced delimiter: a..b",
		"example.com.":     "valid_hostname: misplaced delimiter: example.com.",
		"a b":              "valid_hostname: invalid character 32(decimal): a b",
		"\xc3\xa9.example": "valid_hostname: invalid character 195(decimal): \xc3\xa9.example",
		long:               "valid_hostname: bad length 256 for " + long[:100] + "...",
		"[1.2.3.4]":        "valid_hostname: invalid character 91(decimal): [1.2.3.4]",
		"-" + long[:120]:   "valid_hostname: misplaced hyphen: -" + long[:99],
	} {
		err := Check(name)
		if got := errText(err); got != want {
			t.Errorf("Check(%q) = %q, want %q", name, got, want)
		}
		if Valid(name) != (want == "") {
			t.Errorf("Valid(%q) disagrees with Check", name)
		}
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestCheckAddr(t *testing.T) {
	for addr, want := range map[string]string{
		"192.0.2.1":           "",
		"0.0.0.0":             "",
		"::1":                 "",
		"::":                  "",
		"2001:db8::1":         "",
		"::ffff:192.0.2.1":    "",
		"1:2:3:4:5:6:7:8":     "",
		"fe80::1%eth0":        "valid_ipv6_hostaddr: invalid character 37(decimal) in IPv6 address: fe80::1%eth0",
		"12345::1":            "valid_ipv6_hostaddr: malformed IPv6 address: 12345::1",
		"1:2:3:4:5:6:1.2.3.4": "",
		"::1.2.3.256":         "valid_ipv4_hostaddr: invalid octet value: 1.2.3.256",
	} {
		if got := errText(CheckAddr(addr)); got != want {
			t.Errorf("CheckAddr(%q) = %q, want %q", addr, got, want)
		}
		if ValidAddr(addr) != (want == "") {
			t.Errorf("ValidAddr(%q) disagrees with CheckAddr", addr)
		}
	}
}

func TestCheckPort(t *testing.T) {
	for port, want := range map[string]string{
		"25":     "",
		"0":      "",
		"65535":  "",
		"65536":  "valid_hostport: out-of-range port number: 65536",
		"100000": "valid_hostport: out-of-range port number: 100000",
		"025":    "valid_hostport: leading zero in port number: 025",
		"smtp":   "valid_hostport: non-numeric port number: smtp",
		"":       "valid_hostport: non-numeric port number: ",
	} {
		if got := errText(CheckPort(port)); got != want {
			t.Errorf("CheckPort(%q) = %q, want %q", port, got, want)
		}
	}
}

func TestNumericTLD(t *testing.T) {
	for name, want := range map[string]bool{"host.123": true, "123": true, "host.com": false, "a.1b": false, "a.": false, "": false} {
		if NumericTLD(name) != want {
			t.Errorf("NumericTLD(%q) = %v", name, !want)
		}
	}
}

// maxDiag bounds a diagnostic: the longest fixed text ("valid_ipv6_hostaddr:
// invalid character 255(decimal) in IPv6 address: ", 68 bytes) plus the
// input clipped to 100 bytes, plus "..." after a bad length.
const maxDiag = 68 + 100 + 3

func FuzzCheck(f *testing.F) {
	for _, s := range []string{"mail.example.com", "1.2.3.4", "::1", "a:a:a:a:a:a:1.2.3.", ":a::b", "a-.b", "0.1.2.3", strings.Repeat("a", 70), ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if err := Check(s); err == nil {
			if len(s) == 0 || len(s) > MaxNameLen || strings.Contains(s, "..") || strings.Trim(s, "0123456789.") == "" {
				t.Fatalf("Check accepted %q", s)
			}
		} else if !strings.HasPrefix(err.Error(), "valid_hostname: ") || len(err.Error()) > maxDiag {
			t.Fatalf("Check(%q): bad diagnostic %q", s, err)
		}
		if err := CheckAddr(s); err == nil {
			if strings.IndexByte(s, ':') < 0 && CheckIPv4(s) != nil {
				t.Fatalf("CheckAddr and CheckIPv4 disagree on %q", s)
			}
		} else if len(err.Error()) > maxDiag {
			t.Fatalf("CheckAddr(%q): diagnostic too long", s)
		}
	})
}

func TestCheckMailLiteral(t *testing.T) {
	for lit, want := range map[string]string{
		"[192.0.2.1]":                       "",
		"[IPv6:2001:db8::1]":                "",
		"[ipv6:::1]":                        "",
		"192.0.2.1":                         "valid_mailhost_literal: '[' expected at start: 192.0.2.1",
		"[192.0.2.1":                        "valid_mailhost_literal: ']' expected at end: [192.0.2.1",
		"[192.0.2.1]x":                      "valid_mailhost_literal: unexpected text after ']': [192.0.2.1]x",
		"[2001:db8::1]":                     "valid_ipv4_hostaddr: invalid octet value: 2001:db8::1",
		"[IPv6:192.0.2.1]":                  "valid_ipv6_hostaddr: malformed IPv4-in-IPv6 address: 192.0.2.1",
		"[" + strings.Repeat("1", 46) + "]": "valid_mailhost_literal: too much text: [" + strings.Repeat("1", 46) + "]",
	} {
		if got := errText(CheckMailLiteral(lit)); got != want {
			t.Errorf("CheckMailLiteral(%q) = %q, want %q", lit, got, want)
		}
	}
	if bare, err := CheckMailAddr("IPv6:::1"); err != nil || bare != "::1" {
		t.Errorf("CheckMailAddr(IPv6:::1) = %q, %v", bare, err)
	}
}

func FuzzCheckMailLiteral(f *testing.F) {
	for _, s := range []string{"[1.2.3.4]", "[IPv6:::1]", "[", "[]", "[IPv6:]", "x]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if CheckMailLiteral(s) == nil {
			inner := s[1 : len(s)-1]
			if _, err := CheckMailAddr(inner); err != nil {
				t.Fatalf("literal %q valid but its address is not", s)
			}
		}
	})
}
