package resolve

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"moat/internal/config"
	"moat/internal/maps"
)

// FuzzResolve classifies arbitrary domains under a configuration that
// uses every class. Invariants: no error without failing tables, an invalid
// domain is Default, one trailing dot never changes the answer, and case
// never does.
func FuzzResolve(f *testing.F) {
	dir := f.TempDir()
	cf := base + "resolve_numeric_domain = yes\nproxy_interfaces = 192.0.2.7\n" +
		"mydestination = $myhostname, localhost, dup.example\n" +
		"virtual_alias_domains = va.example, dup.example\nvirtual_mailbox_domains = vm.example\n" +
		"relay_domains = relay.example\nhelpful_warnings = no\n"
	if err := os.WriteFile(filepath.Join(dir, "main.cf"), []byte(cf), 0o644); err != nil {
		f.Fatal(err)
	}
	cfg, err := config.Load(dir)
	if err != nil {
		f.Fatal(err)
	}
	r, err := New(cfg, maps.DefaultOptions())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { r.Close() })
	for _, s := range []string{"", ".", "mail.example.com.", "[127.0.0.1]", "[IPv6:::1]", "127.0.0.1", "::1",
		"va.example", "vm.example", "a.relay.example", "example.org", "[192.0.2.7]", "a..", "[ipv6:x]", "ÉXAMPLE.com"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, domain string) {
		res, err := r.Resolve(domain)
		if err != nil {
			t.Fatalf("Resolve(%q): %v", domain, err)
		}
		if res.Invalid && res.Class != Default {
			t.Fatalf("Resolve(%q): invalid but %v", domain, res.Class)
		}
		if domain != "" && !strings.HasSuffix(domain, ".") {
			dotted, err := r.Resolve(domain + ".")
			if err != nil || dotted.Class != res.Class || dotted.Invalid != res.Invalid {
				t.Fatalf("Resolve(%q) = %+v but with a trailing dot %+v, %v", domain, res, dotted, err)
			}
		}
		upper, err := r.Resolve(strings.ToUpper(domain))
		if err == nil && strings.ToUpper(domain) == asciiUpper(domain) && (upper.Class != res.Class || upper.Invalid != res.Invalid) {
			t.Fatalf("Resolve(%q) = %+v but uppercased %+v", domain, res, upper)
		}
	})
}

// asciiUpper uppercases ASCII letters byte by byte.
func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}
