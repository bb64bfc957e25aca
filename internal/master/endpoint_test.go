package master

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func noDNS(_ context.Context, host string) ([]netip.Addr, error) {
	if host == "mx.test.example" {
		return []netip.Addr{netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("2001:db8::7")}, nil
	}
	return nil, errors.New("no such host")
}

func TestSplitServiceName(t *testing.T) {
	cases := []struct{ in, host, port, err string }{
		{"smtp", "", "smtp", ""},
		{"25", "", "25", ""},
		{"127.0.0.1:2525", "127.0.0.1", "2525", ""},
		{"[::1]:2525", "::1", "2525", ""},
		{"mx.test.example:submission", "mx.test.example", "submission", ""},
		{":25", "", "25", ""},
		{"", "", "", "empty service name"},
		{"::1:25", "", "", "IPv6 address must be in brackets"},
		{"[::1]", "", "", "missing port"},
		{"[::1:25", "", "", "missing \"]\""},
		{"127.0.0.1:", "", "", "missing port"},
		{"127.0.0.1:a b", "", "", "bad port"},
		{"[]:25", "", "", "empty host"},
	}
	for _, tc := range cases {
		h, p, err := splitServiceName(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || h != tc.host || p != tc.port {
			t.Errorf("%q = %q %q %v, want %q %q", tc.in, h, p, err, tc.host, tc.port)
		}
	}
}

func TestEndpoints(t *testing.T) {
	both := protocols{v4: true, v6: true}
	v4 := protocols{v4: true}
	ctx := context.Background()
	loop, err := resolveInterfaces(ctx, []string{"loopback-only"}, both, noDNS)
	if err != nil {
		t.Fatal(err)
	}
	all, _ := resolveInterfaces(ctx, []string{"all"}, both, noDNS)
	cases := []struct {
		name     string
		ifs      interfaces
		p        protocols
		eps      []endpoint
		internal string
	}{
		{"smtp", all, both, []endpoint{{"tcp4", "0.0.0.0:25"}, {"tcp6", "[::]:25"}}, "25"},
		{"submission", all, v4, []endpoint{{"tcp4", "0.0.0.0:587"}}, "587"},
		{"smtps", loop, both, []endpoint{{"tcp4", "127.0.0.1:465"}, {"tcp6", "[::1]:465"}}, "465"},
		{"127.0.0.1:2525", all, both, []endpoint{{"tcp4", "127.0.0.1:2525"}}, "[127.0.0.1]:2525"},
		{"[::1]:2587", loop, both, []endpoint{{"tcp6", "[::1]:2587"}}, "[::1]:2587"},
		{"mx.test.example:25", all, v4, []endpoint{{"tcp4", "192.0.2.7:25"}}, "[192.0.2.7]:25"},
	}
	for _, tc := range cases {
		eps, internal, err := endpoints(ctx, tc.name, tc.ifs, tc.p, noDNS)
		if err != nil || !reflect.DeepEqual(eps, tc.eps) || internal != tc.internal {
			t.Errorf("%s: %v %q %v, want %v %q", tc.name, eps, internal, err, tc.eps, tc.internal)
		}
	}
	for _, bad := range []string{"nosuchservice-xyz", "70000", "[::1]:25", "unknown.host:25"} {
		if _, _, err := endpoints(ctx, bad, all, v4, noDNS); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func TestInterfacesAndProtocols(t *testing.T) {
	ctx := context.Background()
	p, err := parseProtocols([]string{"ipv4"})
	if err != nil || !p.v4 || p.v6 {
		t.Fatalf("ipv4: %v %v", p, err)
	}
	if _, err := parseProtocols([]string{"ipx"}); err == nil {
		t.Error("ipx accepted")
	}
	if _, err := parseProtocols(nil); err == nil {
		t.Error("empty inet_protocols accepted")
	}
	ifs, err := resolveInterfaces(ctx, []string{"loopback-only"}, p, noDNS)
	if err != nil || len(ifs.Addrs) != 1 || ifs.Addrs[0].String() != "127.0.0.1" {
		t.Fatalf("loopback-only ipv4: %v %v", ifs, err)
	}
	ifs, err = resolveInterfaces(ctx, []string{"127.0.0.1", "[::1]", "mx.test.example", "127.0.0.1"}, protocols{v4: true, v6: true}, noDNS)
	want := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1"), netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("2001:db8::7")}
	if err != nil || !reflect.DeepEqual(ifs.Addrs, want) {
		t.Fatalf("list: %v %v", ifs.Addrs, err)
	}
	if _, err := resolveInterfaces(ctx, []string{"::1"}, p, noDNS); err == nil {
		t.Error("IPv6 interface with ipv4 only accepted")
	}
}

func TestPIDFormat(t *testing.T) {
	if got := FormatPID(1234); len(got) != 33 || got[28:] != "1234\n" {
		t.Fatalf("FormatPID = %q", got)
	}
	for in, want := range map[string]int{"  42\n": 42, "7": 7, FormatPID(99): 99} {
		if got, err := ParsePID([]byte(in)); got != want || err != nil {
			t.Errorf("ParsePID(%q) = %d %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "\n", "0", "-1", "12a", "99999999999999999999", " 1 2"} {
		if _, err := ParsePID([]byte(bad)); err == nil {
			t.Errorf("ParsePID(%q) accepted", bad)
		}
	}
}

// TestDebianMasterCf loads Debian's stock master.cf, as installed with the
// Postfix oracle: its smtp row becomes one inet service on port 25 of every
// address, and every unix row is accepted and set aside.
func TestDebianMasterCf(t *testing.T) {
	data, err := os.ReadFile("/etc/postfix/master.cf")
	if err != nil {
		t.Skip("no /etc/postfix/master.cf:", err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "master.cf"), data, 0o644)
	os.WriteFile(filepath.Join(dir, "main.cf"), []byte("queue_directory = "+dir+"/spool\n"), 0o644)
	srv := map[string]ServerFactory{"smtpd": func(ServiceDeps) (ConnServer, error) { return nil, nil }}
	snap, _, _, err := loadSnapshot(context.Background(), dir, dir, srv, nil, nil, noDNS)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.inet) != 1 {
		t.Fatalf("%d inet services, want 1", len(snap.inet))
	}
	s := snap.inet[0]
	want := []endpoint{{"tcp4", "0.0.0.0:25"}, {"tcp6", "[::]:25"}}
	if s.key != "smtp/inet" || s.internal != "25" || s.maxproc != 100 || !reflect.DeepEqual(s.eps, want) {
		t.Errorf("smtp: key %s internal %s maxproc %d eps %v", s.key, s.internal, s.maxproc, s.eps)
	}
	if len(snap.skipped) < 20 {
		t.Errorf("only %d rows set aside", len(snap.skipped))
	}
}
