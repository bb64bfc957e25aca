package mtasts

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"moat/internal/config"
	"moat/internal/dns"
)

// DefaultTimeout bounds a policy fetch when Options.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// fetchRetry is how long a failed fetch for one TXT id is not tried again:
// without it, every delivery to a domain whose policy host is down (or
// blocked by an attacker) would wait out a whole fetch time limit, one after
// another.
const fetchRetry = 5 * time.Minute

// Options configure a Source.
type Options struct {
	// Resolver looks up the TXT record and the policy host's addresses
	// (required): moat's resolver, so dns_servers applies.
	Resolver *dns.Resolver
	// CacheDir keeps one file per domain so policies outlive a restart
	// (RFC 8461 §5.1); empty keeps them in memory only. It is created
	// (mode 0700) at the first write.
	CacheDir string
	// CAFile holds the PEM certificates trusted for policy hosts; empty
	// means the system roots (read at New, before a daemon's jail).
	CAFile string
	// Timeout bounds one policy fetch (connect, TLS, request, body);
	// zero means DefaultTimeout.
	Timeout time.Duration
	// Port is the policy host's HTTPS port: zero means 443, the only
	// port RFC 8461 §3.3 allows. Tests set another.
	Port int
	// Now is the clock max_age is measured on; nil means time.Now.
	Now func() time.Time
	// Warn receives problems with the cache directory, without a
	// "warning: " prefix; nil discards them.
	Warn func(string)
}

// Source finds and keeps MTA-STS policies; it is safe for concurrent use.
// A nil *Source is MTA-STS turned off: Lookup gives no policy.
type Source struct {
	resolver *dns.Resolver
	dir      string
	roots    *x509.CertPool
	timeout  time.Duration
	port     int
	now      func() time.Time
	warn     func(string)
	client   *http.Client

	// lock guards mem, the in-memory cache in front of the files.
	lock chan struct{}
	mem  map[string]*entry
}

// entry is one domain's state; its own one-slot channel serialises the
// lookups of that domain, so concurrent deliveries fetch once.
type entry struct {
	busy     chan struct{}
	loaded   bool // the cache file has been read
	pol      *Policy
	failedID string // the id a fetch last failed for
	failedAt time.Time
}

// New makes a Source.
func New(o Options) (*Source, error) {
	if o.Resolver == nil {
		return nil, errors.New("MTA-STS: no resolver")
	}
	s := &Source{
		resolver: o.Resolver,
		dir:      o.CacheDir,
		timeout:  o.Timeout,
		port:     o.Port,
		now:      o.Now,
		warn:     o.Warn,
		lock:     make(chan struct{}, 1),
		mem:      make(map[string]*entry),
	}
	if s.timeout <= 0 {
		s.timeout = DefaultTimeout
	}
	if s.port == 0 {
		s.port = 443
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.warn == nil {
		s.warn = func(string) {}
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("MTA-STS CA file: %w", err)
		}
		s.roots = x509.NewCertPool()
		if !s.roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("MTA-STS CA file %s: no PEM certificate", o.CAFile)
		}
	} else {
		roots, err := x509.SystemCertPool()
		if err != nil {
			return nil, fmt.Errorf("MTA-STS: system roots: %w", err)
		}
		s.roots = roots
	}
	s.client = s.newHTTPClient()
	return s, nil
}

// FromConfig builds the Source the smtp agent uses from moat's parameters
// (docs/DEFAULTS.md): smtp_mta_sts (off: a nil Source and no error),
// smtp_mta_sts_cache_directory, smtp_mta_sts_CAfile and
// smtp_mta_sts_timeout. r is the agent's resolver (dns.FromConfig).
func FromConfig(cfg *config.Config, r *dns.Resolver, warn func(string)) (*Source, error) {
	on, err := cfg.Bool("smtp_mta_sts")
	if err != nil {
		return nil, fmt.Errorf("smtp_mta_sts: %w", err)
	}
	if !on {
		return nil, nil
	}
	timeout, err := cfg.Duration("smtp_mta_sts_timeout")
	if err != nil {
		return nil, fmt.Errorf("smtp_mta_sts_timeout: %w", err)
	}
	return New(Options{
		Resolver: r,
		CacheDir: cfg.Get("smtp_mta_sts_cache_directory"),
		CAFile:   cfg.Get("smtp_mta_sts_CAfile"),
		Timeout:  timeout,
		Warn:     warn,
	})
}

// Lookup returns the MTA-STS policy in force for the next-hop domain, or nil
// when there is none (RFC 8461 §5.1). A nil policy never stops delivery: the
// agent then delivers as without MTA-STS. err explains a failure on the way
// (a malformed TXT record, a failed TXT lookup or fetch) for the log; it can
// come with a policy, the unexpired cached one that stays in force when the
// TXT lookup or the fetch fails (§5.1, the downgrade defence). A domain
// that simply publishes no policy gives (nil, nil).
func (s *Source) Lookup(ctx context.Context, domain string) (*Policy, error) {
	if s == nil {
		return nil, nil
	}
	d, err := normDomain(domain)
	if err != nil {
		return nil, err
	}
	e, err := s.acquire(ctx, d)
	if err != nil {
		return nil, err
	}
	defer s.release(d, e)

	now := s.now()
	if !e.loaded {
		p, err := s.loadFile(d)
		if err != nil {
			s.warn(err.Error())
		}
		e.pol, e.loaded = p, true
	}
	if e.pol != nil && e.pol.Expired(now) {
		e.pol = nil
	}
	cached := e.pol

	id, err := s.lookupID(ctx, d)
	if err != nil || id == "" {
		// No record, a malformed one or a failed lookup: an unexpired
		// cached policy stays (§5.1; withdrawing a policy takes a
		// "mode: none" policy under a new id, §8.3).
		return cached, err
	}
	if cached != nil && cached.ID == id {
		return cached, nil
	}
	if e.failedID == id && now.Sub(e.failedAt) < fetchRetry {
		return cached, fmt.Errorf("MTA-STS policy for %s (id %s): fetch failed %s ago, not retried yet", d, id, now.Sub(e.failedAt).Round(time.Second))
	}
	p, err := s.fetch(ctx, d)
	if err != nil {
		e.failedID, e.failedAt = id, now
		return cached, fmt.Errorf("MTA-STS policy for %s: %w", d, err)
	}
	p.Domain, p.ID, p.Fetched = d, id, now
	e.pol, e.failedID = p, ""
	if err := s.storeFile(p); err != nil {
		s.warn(err.Error())
	}
	return p, nil
}

// lookupID asks for _mta-sts.DOMAIN's TXT records (RFC 8461 §3.1): of the
// records beginning "v=STSv1" exactly one must remain, and parse. No
// record is ("", nil).
func (s *Source) lookupID(ctx context.Context, d string) (string, error) {
	name := "_mta-sts." + d
	res := s.resolver.Session().Lookup(ctx, name, dns.TXT)
	switch res.Status {
	case dns.OK:
	case dns.NotFound, dns.Fail:
		return "", nil
	default:
		return "", fmt.Errorf("MTA-STS TXT lookup: %s", res.Why)
	}
	var recs []string
	for _, rr := range res.RRs {
		// The record's strings are one text (§3.1), not just the
		// first one Postfix's restrictions read.
		if txt := strings.Join(rr.Strings, ""); rr.Type == dns.TXT && IsSTSRecord(txt) {
			recs = append(recs, txt)
		}
	}
	switch len(recs) {
	case 0:
		return "", nil
	case 1:
	default:
		return "", fmt.Errorf("MTA-STS: %s has %d v=STSv1 TXT records, not one: no policy", name, len(recs))
	}
	id, err := ParseTXT(recs[0])
	if err != nil {
		return "", fmt.Errorf("MTA-STS: %s: %w: no policy", name, err)
	}
	return id, nil
}

// acquire takes domain d's entry for this goroutine, waiting (as ctx
// allows) while another lookup of d runs.
func (s *Source) acquire(ctx context.Context, d string) (*entry, error) {
	for {
		s.lock <- struct{}{}
		e := s.mem[d]
		if e == nil {
			e = &entry{busy: make(chan struct{}, 1)}
			s.mem[d] = e
		}
		<-s.lock
		select {
		case e.busy <- struct{}{}:
		case <-ctx.Done():
			return nil, fmt.Errorf("MTA-STS policy for %s: %w", d, ctx.Err())
		}
		s.lock <- struct{}{}
		current := s.mem[d] == e
		<-s.lock
		if current {
			return e, nil
		}
		// The entry was dropped while we waited: start again.
		<-e.busy
	}
}

// release ends a lookup of d; an entry that holds nothing worth keeping is
// dropped, so domains without MTA-STS do not pile up in memory.
func (s *Source) release(d string, e *entry) {
	s.lock <- struct{}{}
	if e.pol == nil && e.failedID == "" {
		delete(s.mem, d)
	}
	<-s.lock
	<-e.busy
}
