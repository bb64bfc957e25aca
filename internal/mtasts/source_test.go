package mtasts

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

const txtID1 = `_mta-sts.example.test. IN TXT "v=STSv1; id=20260101T000000"`

func TestEnforcePolicyFetchedAndMatched(t *testing.T) {
	_, r := startDNS(t, txtID1)
	ps := startPolicyServer(t, "mta-sts.example.test", enforcePolicy)
	dir := t.TempDir()
	s := newSource(t, r, ps, dir, nil)

	p, err := lookup(t, s, "Example.Test.")
	if err != nil || p == nil {
		t.Fatalf("Lookup = %v, %v", p, err)
	}
	if !p.Enforce() || p.Mode != Enforce || p.ID != "20260101T000000" || p.MaxAge != 86400*time.Second || p.Domain != "example.test" {
		t.Fatalf("policy = %+v", p)
	}
	for mx, want := range map[string]bool{
		"mail.example.test":      true,
		"MAIL.example.test.":     true,
		"a.mx.example.test":      true,
		"mx.example.test":        false,
		"a.b.mx.example.test":    false,
		"evil.example.test":      false,
		"mail.example.test.evil": false,
	} {
		if got := p.Match(mx); got != want {
			t.Errorf("Match(%q) = %v, want %v", mx, got, want)
		}
	}
	// The same id again: the cached policy, no second fetch.
	if p2, err := lookup(t, s, "example.test"); err != nil || p2 != p {
		t.Fatalf("second Lookup = %v, %v", p2, err)
	}
	if n := ps.count(); n != 1 {
		t.Fatalf("%d fetches, want 1", n)
	}
	if _, err := os.Stat(filepath.Join(dir, "example.test")); err != nil {
		t.Fatalf("cache file: %v", err)
	}
}

func TestTestingAndNoneModes(t *testing.T) {
	for _, tc := range []struct {
		body string
		mode Mode
	}{
		{"version: STSv1\nmode: testing\nmx: mail.example.test\nmax_age: 600\n", Testing},
		{"version: STSv1\nmode: none\nmax_age: 600\n", None},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			_, r := startDNS(t, txtID1)
			ps := startPolicyServer(t, "mta-sts.example.test", tc.body)
			s := newSource(t, r, ps, "", nil)
			p, err := lookup(t, s, "example.test")
			if err != nil || p == nil || p.Mode != tc.mode || p.Enforce() {
				t.Fatalf("Lookup = %+v, %v", p, err)
			}
		})
	}
}

func TestNoOrBadTXTMeansNoPolicy(t *testing.T) {
	for name, tc := range map[string]struct {
		records []string
		wantErr bool
	}{
		"no record":      {nil, false},
		"only other TXT": {[]string{`_mta-sts.example.test. IN TXT "v=spf1 -all"`}, false},
		"two records":    {[]string{txtID1, `_mta-sts.example.test. IN TXT "v=STSv1; id=2"`}, true},
		"no id":          {[]string{`_mta-sts.example.test. IN TXT "v=STSv1;"`}, true},
		"id too long":    {[]string{`_mta-sts.example.test. IN TXT "v=STSv1; id=123456789012345678901234567890123"`}, true},
		"id not alnum":   {[]string{`_mta-sts.example.test. IN TXT "v=STSv1; id=2026-01"`}, true},
		"bad extension":  {[]string{`_mta-sts.example.test. IN TXT "v=STSv1; id=1; x y=z"`}, true},
		"lower-case v":   {[]string{`_mta-sts.example.test. IN TXT "v=stsv1; id=1"`}, false},
	} {
		t.Run(name, func(t *testing.T) {
			_, r := startDNS(t, tc.records...)
			ps := startPolicyServer(t, "mta-sts.example.test", enforcePolicy)
			s := newSource(t, r, ps, "", nil)
			p, err := lookup(t, s, "example.test")
			if p != nil || (err != nil) != tc.wantErr {
				t.Fatalf("Lookup = %+v, %v", p, err)
			}
			if n := ps.count(); n != 0 {
				t.Fatalf("%d fetches, want 0", n)
			}
		})
	}
	// A record published as several character-strings is one text.
	t.Run("split strings", func(t *testing.T) {
		_, r := startDNS(t, `_mta-sts.example.test. IN TXT "v=STSv1; id=20" "26"`)
		ps := startPolicyServer(t, "mta-sts.example.test", enforcePolicy)
		s := newSource(t, r, ps, "", nil)
		if p, err := lookup(t, s, "example.test"); err != nil || p == nil || p.ID != "2026" {
			t.Fatalf("Lookup = %+v, %v", p, err)
		}
	})
	t.Run("extra fields and other TXT", func(t *testing.T) {
		_, r := startDNS(t, `_mta-sts.example.test. IN TXT "v=spf1 -all"`,
			`_mta-sts.example.test. IN TXT "v=STSv1 ; id=abc ; ext.x=1;"`)
		ps := startPolicyServer(t, "mta-sts.example.test", enforcePolicy)
		s := newSource(t, r, ps, "", nil)
		if p, err := lookup(t, s, "example.test"); err != nil || p == nil || p.ID != "abc" {
			t.Fatalf("Lookup = %+v, %v", p, err)
		}
	})
}

func TestFetchRefused(t *testing.T) {
	for name, tc := range map[string]struct {
		status      int
		contentType string
		body        string
		location    string
		want        string
	}{
		"redirect":           {http.StatusFound, "text/plain", "", "https://mta-sts.example.test/elsewhere", "redirect refused"},
		"permanent redirect": {http.StatusMovedPermanently, "text/plain", "", "/other", "redirect refused"},
		"body too big":       {http.StatusOK, "text/plain", enforcePolicy + "x: " + strings.Repeat("y", MaxPolicySize) + "\n", "", "larger than"},
		"content type":       {http.StatusOK, "text/html", enforcePolicy, "", "not text/plain"},
		"not found":          {http.StatusNotFound, "text/plain", "", "", "404"},
		"bad policy":         {http.StatusOK, "text/plain", "version: STSv1\nmode: enforce\nmax_age: 1\n", "", "without mx"},
	} {
		t.Run(name, func(t *testing.T) {
			_, r := startDNS(t, txtID1)
			ps := startPolicyServer(t, "mta-sts.example.test", "")
			ps.set(tc.status, tc.contentType, tc.body)
			ps.location = tc.location
			s := newSource(t, r, ps, "", nil)
			p, err := lookup(t, s, "example.test")
			if p != nil || err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Lookup = %+v, %v; want an error with %q", p, err, tc.want)
			}
			if n := ps.count(); n != 1 {
				t.Fatalf("%d requests, want 1 (redirects are not followed)", n)
			}
		})
	}
}

func TestFetchWrongCertificateName(t *testing.T) {
	_, r := startDNS(t, txtID1)
	ps := startPolicyServer(t, "mta-sts.other.test", enforcePolicy)
	s := newSource(t, r, ps, "", nil)
	p, err := lookup(t, s, "example.test")
	if p != nil || err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Lookup = %+v, %v; want a certificate error", p, err)
	}
}

func TestCachedPolicyWhenLookupsFail(t *testing.T) {
	d, r := startDNS(t, txtID1)
	ps := startPolicyServer(t, "mta-sts.example.test", enforcePolicy)
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := newSource(t, r, ps, t.TempDir(), c)
	p, err := lookup(t, s, "example.test")
	if err != nil || !p.Enforce() {
		t.Fatalf("Lookup = %+v, %v", p, err)
	}
	// The web server goes away: with the same id nothing is fetched.
	ps.srv.Close()
	c.advance(time.Hour)
	if p2, err := lookup(t, s, "example.test"); err != nil || p2 != p {
		t.Fatalf("server down: Lookup = %+v, %v", p2, err)
	}
	// The TXT lookup fails too (an attacker blocking DNS): still the
	// cached policy, with the failure reported.
	d.Fail("_mta-sts.example.test", mdns.RcodeServerFailure)
	p3, err := lookup(t, s, "example.test")
	if p3 != p || err == nil {
		t.Fatalf("TXT failing: Lookup = %+v, %v; want the cached policy and an error", p3, err)
	}
}

func TestMaxAgeExpiry(t *testing.T) {
	_, r := startDNS(t, txtID1)
	body := "version: STSv1\nmode: enforce\nmx: mail.example.test\nmax_age: 100\n"
	ps := startPolicyServer(t, "mta-sts.example.test", body)
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := newSource(t, r, ps, t.TempDir(), c)
	if p, err := lookup(t, s, "example.test"); err != nil || !p.Enforce() {
		t.Fatalf("Lookup = %+v, %v", p, err)
	}
	c.advance(99 * time.Second)
	if p, err := lookup(t, s, "example.test"); err != nil || !p.Enforce() || ps.count() != 1 {
		t.Fatalf("before max_age: Lookup = %+v, %v, %d fetches", p, err, ps.count())
	}
	// Expired: fetched again.
	c.advance(time.Second)
	if p, err := lookup(t, s, "example.test"); err != nil || !p.Enforce() || ps.count() != 2 {
		t.Fatalf("at max_age: Lookup = %+v, %v, %d fetches", p, err, ps.count())
	}
	// Expired with the server down: no policy any more.
	ps.srv.Close()
	c.advance(101 * time.Second)
	if p, err := lookup(t, s, "example.test"); p != nil || err == nil {
		t.Fatalf("expired, server down: Lookup = %+v, %v", p, err)
	}
	// The failed fetch is not retried at once, and is after fetchRetry.
	if _, err := lookup(t, s, "example.test"); err == nil || !strings.Contains(err.Error(), "not retried") {
		t.Fatalf("second try: %v", err)
	}
	c.advance(fetchRetry)
	if _, err := lookup(t, s, "example.test"); err == nil || strings.Contains(err.Error(), "not retried") {
		t.Fatalf("after fetchRetry: %v", err)
	}
}

// TestRestartAndIDChange: a second Source on the same cache directory
// (a restarted daemon) uses the policy on disk; a new id makes it fetch;
// a new id whose fetch fails keeps the old policy (the downgrade defence).
func TestRestartAndIDChange(t *testing.T) {
	dir := t.TempDir()
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	_, r1 := startDNS(t, txtID1)
	ps := startPolicyServer(t, "mta-sts.example.test", enforcePolicy)
	if p, err := lookup(t, newSource(t, r1, ps, dir, c), "example.test"); err != nil || !p.Enforce() {
		t.Fatalf("Lookup = %+v, %v", p, err)
	}

	// Restart, same id: the policy from disk, no fetch.
	c.advance(time.Minute)
	p, err := lookup(t, newSource(t, r1, ps, dir, c), "example.test")
	if err != nil || !p.Enforce() || !p.Match("x.mx.example.test") || ps.count() != 1 {
		t.Fatalf("after restart: Lookup = %+v, %v, %d fetches", p, err, ps.count())
	}
	if !p.Fetched.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("Fetched = %v, want the first fetch's time", p.Fetched)
	}

	// A new id: fetched again, the new policy replaces the old on disk.
	_, r2 := startDNS(t, `_mta-sts.example.test. IN TXT "v=STSv1; id=2"`)
	ps.set(http.StatusOK, "text/plain", "version: STSv1\nmode: testing\nmx: new.example.test\nmax_age: 86400\n")
	s2 := newSource(t, r2, ps, dir, c)
	p, err = lookup(t, s2, "example.test")
	if err != nil || p.Mode != Testing || p.ID != "2" || ps.count() != 2 {
		t.Fatalf("new id: Lookup = %+v, %v, %d fetches", p, err, ps.count())
	}

	// Yet another id while the server is down: the cached policy stays.
	ps.srv.Close()
	_, r3 := startDNS(t, `_mta-sts.example.test. IN TXT "v=STSv1; id=3"`)
	p, err = lookup(t, newSource(t, r3, ps, dir, c), "example.test")
	if err == nil || p == nil || p.ID != "2" {
		t.Fatalf("new id, server down: Lookup = %+v, %v", p, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 {
		t.Fatalf("cache directory holds %v (%v), want one file", entries, err)
	}
}

func TestConcurrentLookupsFetchOnce(t *testing.T) {
	_, r := startDNS(t, txtID1)
	ps := startPolicyServer(t, "mta-sts.example.test", enforcePolicy)
	s := newSource(t, r, ps, t.TempDir(), nil)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			p, err := s.Lookup(ctx, "example.test")
			if err == nil && !p.Enforce() {
				err = context.Canceled
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := ps.count(); n != 1 {
		t.Fatalf("%d fetches, want 1", n)
	}
}

func TestNilSourceAndBadDomain(t *testing.T) {
	var s *Source
	if p, err := s.Lookup(context.Background(), "example.test"); p != nil || err != nil {
		t.Fatalf("nil Source: %v, %v", p, err)
	}
	_, r := startDNS(t)
	ps := startPolicyServer(t, "mta-sts.example.test", enforcePolicy)
	s = newSource(t, r, ps, t.TempDir(), nil)
	for _, d := range []string{"", "../etc", "a/b.test", "[127.0.0.1]", "localhost", "*.example.test"} {
		if p, err := lookup(t, s, d); p != nil || err == nil {
			t.Errorf("Lookup(%q) = %v, %v; want an error", d, p, err)
		}
	}
}

func TestPolicyHostWithoutAddress(t *testing.T) {
	_, r := startDNS(t, `_mta-sts.other.test. IN TXT "v=STSv1; id=1"`)
	ps := startPolicyServer(t, "mta-sts.other.test", enforcePolicy)
	s := newSource(t, r, ps, "", nil)
	p, err := lookup(t, s, "other.test")
	if p != nil || err == nil || !strings.Contains(err.Error(), "look up mta-sts.other.test") {
		t.Fatalf("Lookup = %+v, %v", p, err)
	}
}

func TestDamagedCacheFileIsReplaced(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "example.test")
	if err := os.WriteFile(path, []byte(`{"domain":"example.test","id":"x","policy":"mode: enforce"`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, r := startDNS(t, txtID1)
	ps := startPolicyServer(t, "mta-sts.example.test", enforcePolicy)
	var warned []string
	s, err := New(Options{Resolver: r, CacheDir: dir, CAFile: ps.caFile, Port: ps.port,
		Warn: func(w string) { warned = append(warned, w) }})
	if err != nil {
		t.Fatal(err)
	}
	if p, err := lookup(t, s, "example.test"); err != nil || !p.Enforce() {
		t.Fatalf("Lookup = %+v, %v", p, err)
	}
	if len(warned) != 1 || !strings.Contains(warned[0], "MTA-STS cache") {
		t.Fatalf("warnings %q", warned)
	}
	s2 := newSource(t, r, ps, dir, nil)
	if p, err := lookup(t, s2, "example.test"); err != nil || !p.Enforce() || ps.count() != 1 {
		t.Fatalf("after rewrite: Lookup = %+v, %v, %d fetches", p, err, ps.count())
	}
}
