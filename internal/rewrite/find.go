package rewrite

import (
	"errors"
	"fmt"
	"strings"

	"moat/internal/config"
	"moat/internal/maps"
	"moat/internal/resolve"
)

// Maps is a list of lookup tables searched in order, Postfix's maps(3): the
// first table that has the key answers, and a lookup error in any table
// stops the search, so a broken table is never mistaken for "not listed".
type Maps struct {
	// Title is the parameter the list came from, for warnings
	// ("virtual_alias_maps map lookup problem ...").
	Title  string
	tables []maps.Table
}

// OpenMaps opens the tables that parameter param names, in order. An empty
// value gives an empty list (Empty reports it): every lookup misses, and
// callers that treat an empty list specially (local_recipient_maps = means
// "no check") can tell.
//
// A nis: table is skipped with a warning through opts.Warn: Debian's
// default alias_maps is "hash:/etc/aliases, nis:mail.aliases", and Postfix
// on a host without an NIS domain (every host this runs on: moat has no
// NIS client) logs "dict_nis_init: NIS domain name not set - NIS lookups
// disabled" and finds nothing in the table (checked with Debian's
// `postmap -q root nis:mail.aliases`: that warning, exit status 1). Any other unsupported type is an error.
func OpenMaps(cfg *config.Config, param string, opts maps.Options) (*Maps, error) {
	specs, err := cfg.List(param)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", param, err)
	}
	m := &Maps{Title: param}
	for _, spec := range specs {
		if typ, _, err := maps.Split(spec); err == nil && typ == "nis" {
			msg := fmt.Sprintf("dict_nis_init: NIS domain name not set - NIS lookups disabled (%s: %s)", param, spec)
			if opts.Warn != nil {
				opts.Warn(msg)
			}
			continue
		}
		t, err := maps.Open(spec, opts)
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("%s: %w", param, err)
		}
		m.tables = append(m.tables, t)
	}
	return m, nil
}

// NewMaps wraps already open tables (for tests and callers that hold
// tables); Close closes them.
func NewMaps(title string, tables ...maps.Table) *Maps {
	return &Maps{Title: title, tables: tables}
}

// Empty reports whether the list has no tables.
func (m *Maps) Empty() bool { return m == nil || len(m.tables) == 0 }

// Close releases the tables.
func (m *Maps) Close() error {
	if m == nil {
		return nil
	}
	var errs []error
	for _, t := range m.tables {
		errs = append(errs, t.Close())
	}
	m.tables = nil
	return errors.Join(errs...)
}

// Lookup searches the tables in order. partial marks a key that is only
// part of the address (a bare local part, "@domain", the address without
// its extension): pattern tables are asked the whole address only
// (regexp_table(5), DICT_FLAG_FIXED in mail_addr_find).
func (m *Maps) Lookup(key string, partial bool) (string, bool, error) {
	if m == nil || key == "" {
		// maps_find(3): a null key is never looked up.
		return "", false, nil
	}
	for _, t := range m.tables {
		if partial && t.Pattern() {
			continue
		}
		v, ok, err := t.Lookup(key)
		if err != nil {
			return "", false, err
		}
		if ok {
			return v, true, nil
		}
	}
	return "", false, nil
}

// Finder searches an address in a Maps in the order canonical(5) and
// virtual(5) "TABLE SEARCH ORDER" give, Postfix's mail_addr_find(): the
// whole address; the address without its recipient_delimiter extension;
// then, only when the domain is local ($myorigin, $mydestination,
// $inet_interfaces, $proxy_interfaces), the local part with and without
// the extension; then "@domain". Keys are in external (quoted) form, as
// postmap stores them. smtpd's unlisted-recipient checks use the same
// order.
type Finder struct {
	// Delim is recipient_delimiter: any of its characters starts an
	// extension.
	Delim string
	// DoubleBounce is double_bounce_sender, whose local part is never
	// split (split_addr(3)).
	DoubleBounce string
	// MyOrigin is $myorigin, local for this purpose even when it is not
	// in mydestination.
	MyOrigin string
	// Local says whether a domain is local (resolve_local()); nil means
	// only MyOrigin is.
	Local func(domain string) (bool, error)
}

// NewFinder reads recipient_delimiter, double_bounce_sender and myorigin,
// and takes the local-domain test from res (which may be nil).
func NewFinder(cfg *config.Config, res *resolve.Resolver) (*Finder, error) {
	f := &Finder{}
	var err error
	for _, p := range []struct {
		dst  *string
		name string
	}{{&f.Delim, "recipient_delimiter"}, {&f.DoubleBounce, "double_bounce_sender"}, {&f.MyOrigin, "myorigin"}} {
		if *p.dst, err = cfg.GetErr(p.name); err != nil {
			return nil, fmt.Errorf("%s: %w", p.name, err)
		}
	}
	if res != nil {
		f.Local = res.IsLocal
	}
	return f, nil
}

// Found is the outcome of a successful Find.
type Found struct {
	Value string
	// Key is the key that matched.
	Key string
	// Ext is the extension, delimiter included ("+foo"), when the match
	// was for the address without it: the caller may propagate it
	// (propagate_unmatched_extensions).
	Ext string
}

// Find searches m for addr (internal form: local part unquoted). ok is
// false when no table has any of the keys; a non-nil error is a lookup
// failure, which callers treat as temporary.
func (f *Finder) Find(m *Maps, addr string) (res Found, ok bool, err error) {
	if m.Empty() || addr == "" {
		return Found{}, false, nil
	}
	try := func(internal string, partial bool, ext string) {
		if ok || err != nil {
			return
		}
		key := quoteAddr(internal)
		var v string
		v, ok, err = m.Lookup(key, partial)
		if ok {
			res = Found{Value: v, Key: key, Ext: ext}
		}
	}
	tryKey := func(key string) {
		if ok || err != nil {
			return
		}
		var v string
		v, ok, err = m.Lookup(key, true)
		if ok {
			res = Found{Value: v, Key: key}
		}
	}
	bare, ext := f.strip(addr)
	try(addr, false, "")
	if bare != "" {
		try(bare, true, ext)
	}
	at := strings.LastIndexByte(addr, '@')
	if err != nil {
		return Found{}, false, fmt.Errorf("%s lookup of %s: %w", m.Title, addr, err)
	}
	if ok || at < 0 {
		return res, ok, nil
	}
	domain := addr[at+1:]
	local := strings.EqualFold(domain, f.MyOrigin)
	if !local && f.Local != nil {
		if local, err = f.Local(domain); err != nil {
			return Found{}, false, fmt.Errorf("%s lookup of %s: %w", m.Title, addr, err)
		}
	}
	if local {
		tryKey(quoteLocal(addr[:at]))
		if !ok && err == nil && bare != "" {
			tryKey(quoteLocal(bare[:strings.LastIndexByte(bare, '@')]))
			if ok {
				res.Ext = ext
			}
		}
	}
	tryKey("@" + domain)
	if err != nil {
		return Found{}, false, fmt.Errorf("%s lookup of %s: %w", m.Title, addr, err)
	}
	return res, ok, nil
}

// strip is Postfix's strip_addr() with split_addr()'s exceptions: the
// address without its extension, and the extension with its delimiter, or
// "" when there is none to strip.
func (f *Finder) strip(addr string) (bare, ext string) {
	if f.Delim == "" {
		return "", ""
	}
	local, domain := addr, ""
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		local, domain = addr[:at], addr[at:]
	}
	if strings.EqualFold(local, "postmaster") || strings.EqualFold(local, "MAILER-DAEMON") ||
		(f.DoubleBounce != "" && strings.EqualFold(local, f.DoubleBounce)) {
		return "", ""
	}
	if strings.Contains(f.Delim, "-") {
		// Backwards compatibility: owner-foo and foo-request are
		// mailing-list names, not extensions.
		if len(local) >= 6 && strings.EqualFold(local[:6], "owner-") {
			return "", ""
		}
		if len(local) > 8 && strings.EqualFold(local[len(local)-8:], "-request") {
			return "", ""
		}
	}
	i := strings.IndexAny(local, f.Delim)
	if i <= 0 {
		return "", ""
	}
	return local[:i] + domain, local[i:]
}
