package cleanup

import (
	"errors"
	"fmt"

	"moat/internal/config"
	"moat/internal/maps"
)

// Settings are the main.cf parameters cleanup uses, read once per daemon
// and shared by all messages: the check tables stay open between
// messages, as in Postfix's long-lived cleanup processes.
type Settings struct {
	Checks              Checks
	Limits              Limits
	BodyChecksSizeLimit int64
	HopcountLimit       int
	// AlwaysAddMissing is always_add_missing_headers; the SMTP server
	// also adds missing headers for clients that match
	// local_header_rewrite_clients (postconf(5)).
	AlwaysAddMissing bool
	tables           []maps.Table
}

// FromConfig opens header_checks, mime_header_checks (default
// $header_checks), nested_header_checks (default $header_checks) and
// body_checks, and reads header_size_limit, line_length_limit,
// mime_nesting_limit, body_checks_size_limit, hopcount_limit and
// always_add_missing_headers. A table named by several parameters is
// opened once. Close the Settings when done.
func FromConfig(c *config.Config, opts maps.Options) (*Settings, error) {
	s := &Settings{}
	opened := map[string]maps.Table{}
	open := func(param string) ([]maps.Table, error) {
		specs, err := c.List(param)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", param, err)
		}
		var out []maps.Table
		for _, spec := range specs {
			t, ok := opened[spec]
			if !ok {
				t, err = maps.Open(spec, opts)
				if err != nil {
					return nil, fmt.Errorf("%s: open %s: %w", param, spec, err)
				}
				opened[spec] = t
				s.tables = append(s.tables, t)
			}
			out = append(out, t)
		}
		return out, nil
	}
	var err error
	for _, p := range []struct {
		name string
		dst  *[]maps.Table
	}{
		{"header_checks", &s.Checks.Header},
		{"mime_header_checks", &s.Checks.MIME},
		{"nested_header_checks", &s.Checks.Nested},
		{"body_checks", &s.Checks.Body},
	} {
		if *p.dst, err = open(p.name); err != nil {
			s.Close()
			return nil, err
		}
	}
	type intParam struct {
		name string
		dst  *int64
	}
	var hs, ll, nest, hops int64
	ints := []intParam{
		{"header_size_limit", &hs},
		{"line_length_limit", &ll},
		{"mime_nesting_limit", &nest},
		{"body_checks_size_limit", &s.BodyChecksSizeLimit},
		{"hopcount_limit", &hops},
	}
	for _, p := range ints {
		if *p.dst, err = c.Int(p.name); err != nil {
			s.Close()
			return nil, fmt.Errorf("%s: %w", p.name, err)
		}
	}
	s.Limits = Limits{HeaderSize: int(hs), LineLength: int(ll), Nesting: int(nest)}
	s.HopcountLimit = int(hops)
	if s.AlwaysAddMissing, err = c.Bool("always_add_missing_headers"); err != nil {
		s.Close()
		return nil, fmt.Errorf("always_add_missing_headers: %w", err)
	}
	return s, nil
}

// Options returns per-message Options carrying these settings; the caller
// fills in the message's queue ID, origin, envelope and headers to add.
func (s *Settings) Options() Options {
	return Options{Checks: s.Checks, Limits: s.Limits, BodyChecksSizeLimit: s.BodyChecksSizeLimit, HopcountLimit: s.HopcountLimit}
}

// Close closes the tables.
func (s *Settings) Close() error {
	var errs []error
	for _, t := range s.tables {
		errs = append(errs, t.Close())
	}
	s.tables = nil
	return errors.Join(errs...)
}
