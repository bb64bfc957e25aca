package mtasts

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"

	"moat/internal/dns"
)

// MaxPolicySize bounds a policy body: RFC 8461 §3.3 lets senders limit it
// and suggests 64 KiB, far above any real policy.
const MaxPolicySize = 64 << 10

// errRedirect marks a refused redirect (§3.3: "senders MUST NOT follow
// redirects").
var errRedirect = errors.New("redirect refused (RFC 8461 section 3.3)")

// newHTTPClient builds the client for policy fetches: names resolved
// through moat's resolver (so dns_servers applies and a test's loopback
// server answers), never an HTTP proxy from the environment, no redirects,
// the certificate checked against roots, and one time limit for the whole
// fetch.
func (s *Source) newHTTPClient() *http.Client {
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            s.dial,
		TLSClientConfig:        &tls.Config{RootCAs: s.roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    s.timeout,
		DisableKeepAlives:      true,
		MaxResponseHeaderBytes: 16 << 10,
		ResponseHeaderTimeout:  s.timeout,
		ForceAttemptHTTP2:      false,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   s.timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return errRedirect
		},
	}
}

// dial connects to a policy host's addresses as moat's resolver gives them,
// in order, until one answers.
func (s *Source) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	res := s.resolver.Session().HostAddrs(ctx, host)
	if res.Status != dns.OK {
		return nil, fmt.Errorf("look up %s: %s", host, res.Why)
	}
	var d net.Dialer
	var last error
	for _, rr := range res.RRs {
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(rr.Value, port))
		if err == nil {
			return c, nil
		}
		last = err
	}
	if last == nil {
		last = fmt.Errorf("look up %s: no address", host)
	}
	return nil, last
}

// fetch gets and parses domain's policy (RFC 8461 §3.3): GET
// https://mta-sts.DOMAIN/.well-known/mta-sts.txt, "200 OK" only, media type
// text/plain, at most MaxPolicySize bytes.
func (s *Source) fetch(ctx context.Context, domain string) (*Policy, error) {
	host := "mta-sts." + domain
	if s.port != 443 {
		host = net.JoinHostPort(host, strconv.Itoa(s.port))
	}
	url := "https://" + host + "/.well-known/mta-sts.txt"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", url, err)
	}
	req.Header.Set("User-Agent", "moat MTA-STS")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		if resp.StatusCode >= 300 && resp.StatusCode < 400 {
			return nil, fmt.Errorf("fetch %s: %s: %w", url, resp.Status, errRedirect)
		}
		return nil, fmt.Errorf("fetch %s: %s", url, resp.Status)
	}
	mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "text/plain" {
		return nil, fmt.Errorf("fetch %s: media type %q is not text/plain", url, resp.Header.Get("Content-Type"))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxPolicySize+1))
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", url, err)
	}
	if len(body) > MaxPolicySize {
		return nil, fmt.Errorf("fetch %s: policy larger than %d bytes", url, MaxPolicySize)
	}
	p, err := ParsePolicy(string(body))
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", url, err)
	}
	return p, nil
}

// normDomain lower-cases a next-hop domain and checks it is a plain DNS
// name, since it becomes part of a URL and a cache file name.
func normDomain(d string) (string, error) {
	d = strings.ToLower(strings.TrimSuffix(d, "."))
	if strings.HasPrefix(d, "*.") || !validPattern(d) || !strings.Contains(d, ".") {
		return "", fmt.Errorf("MTA-STS: %q is not a domain name", d)
	}
	return d, nil
}
