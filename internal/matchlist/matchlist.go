// Package matchlist implements Postfix's match lists (match_list(3)): the
// parameter values such as mynetworks, debug_peer_list, relay_domains,
// mydestination and smtpd_forbid_bare_newline_exclusions that name hosts,
// domains or networks as a list of patterns, "/file/name" includes and
// "type:table" lookups, each optionally negated with "!". Every daemon asks
// these lists the same question, so the rules live here once.
//
// Where moat departs from Postfix, it fails earlier and refuses patterns
// that can only be mistakes (a list that silently matches less can fail open
// through a lost "!pattern"):
//   - a bad network ("1.2.3.4/24", "[be:be]"), a missing "/file/name" or a
//     table that cannot be opened makes Parse fail; Postfix starts and then
//     fails every lookup that reaches the pattern ("451 4.3.0");
//   - "192.168.10", "1.2.3.300", "[1.2.3.4" and "10.0.0.0/-8" are refused;
//     Postfix compares them as text, so they match nothing;
//   - in an addr_list, a host name is refused (Postfix ignores it);
//   - "#" after other text, and a continuation line with nothing to
//     continue in a "/file/name", are refused (Postfix 3.8+ warns and drops
//     the comment; 3.7 reads it as patterns; both skip the orphan line);
//   - files may nest at most 8 deep (Postfix recurses until it crashes).
package matchlist

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"

	"moat/internal/config"
	"moat/internal/maps"
)

// Kind says what a list matches, which decides how each pattern is read.
// Postfix builds its lists from the same parser with different match
// functions (match_ops(3)): namadr_list, domain_list, addr_list and
// string_list.
type Kind int

const (
	// Host is Postfix's namadr_list: a client's host name (exact, parent
	// domains, ".domain") and its address (exact, [address], net/mask).
	// mynetworks, debug_peer_list, smtpd_forbid_bare_newline_exclusions,
	// permit_mx_backup_networks, smtpd_client_event_limit_exceptions.
	Host Kind = iota
	// Domain is Postfix's domain_list: host or domain names only, with
	// parent-domain matching (relay_domains, fast_flush_domains).
	Domain
	// Addr is Postfix's addr_list: addresses and networks only.
	Addr
	// String is Postfix's string_list: a case-insensitive exact match, or a
	// table that has the whole string as a key. trivial-rewrite(8) matches
	// mydestination, virtual_alias_domains and virtual_mailbox_domains this
	// way, so ".example.com" and parent domains mean nothing there.
	String
)

// String names the kind as Postfix's source does.
func (k Kind) String() string {
	switch k {
	case Host:
		return "namadr_list"
	case Domain:
		return "domain_list"
	case Addr:
		return "addr_list"
	case String:
		return "string_list"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// maxFileDepth bounds "/file/name" includes inside included files. Postfix
// has no bound (a file that names itself recurses until it crashes); a
// legitimate configuration never nests this deep.
const maxFileDepth = 8

// List is a parsed match list. It is safe for concurrent use when its tables
// are (moat's are).
type List struct {
	origin  string
	kind    Kind
	parent  bool
	utf8    bool
	pats    []pattern
	tables  []maps.Table
	literal string // the value, for String()
}

// pattern is one entry after "!" and "/file/name" have been resolved.
type pattern struct {
	negate bool
	// text is the casefolded pattern (for names and exact addresses).
	text string
	// table is set for a type:table pattern; spec is its name.
	table maps.Table
	spec  string
	// cidr is set when the pattern is an address or network that Postfix
	// compares in binary form (match_hostaddr's "expensive" path); v6 is
	// the family the pattern was written in.
	cidr    netip.Prefix
	hasCIDR bool
	v6      bool
}

// New parses the value of parameter param (expanded by cfg) as a match list.
// Parent-domain matching follows parent_domain_matches_subdomains
// (postconf(5)): when it lists param, "example.com" also matches its
// subdomains.
func New(cfg *config.Config, param string, kind Kind, opts maps.Options) (*List, error) {
	value, err := cfg.GetErr(param)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", param, err)
	}
	styles, err := cfg.List("parent_domain_matches_subdomains")
	if err != nil {
		return nil, fmt.Errorf("parent_domain_matches_subdomains: %w", err)
	}
	return ParseStyle(param, value, kind, slices.Contains(styles, styleName(param)), opts)
}

// styleName is the parent_domain_matches_subdomains feature that governs
// param: its own name, except for lists documented to behave as another
// (postconf(5): smtpd_forbid_bare_newline_exclusions "uses the same syntax
// and parent-domain matching behavior as mynetworks").
func styleName(param string) string {
	if param == "smtpd_forbid_bare_newline_exclusions" {
		return "mynetworks"
	}
	return param
}

// defaultParentStyle is Postfix 3.7's parent_domain_matches_subdomains
// default, which Parse applies when it has no configuration to ask.
var defaultParentStyle = []string{
	"debug_peer_list", "fast_flush_domains", "mynetworks",
	"permit_mx_backup_networks", "qmqpd_authorized_clients",
	"relay_domains", "smtpd_access_maps",
}

// Parse parses value as a match list. origin names the parameter in error
// messages, and, as with Postfix's default parent_domain_matches_subdomains,
// decides whether "example.com" also matches subdomains. A caller holding a
// configuration should use New, which reads the real setting.
func Parse(origin, value string, kind Kind, opts maps.Options) (*List, error) {
	return ParseStyle(origin, value, kind, slices.Contains(defaultParentStyle, styleName(origin)), opts)
}

// ParseStyle is Parse with parent-domain matching chosen by the caller
// (Postfix's MATCH_FLAG_PARENT): when parent is false, only ".example.com"
// matches subdomains.
func ParseStyle(origin, value string, kind Kind, parent bool, opts maps.Options) (*List, error) {
	if kind < Host || kind > String {
		return nil, fmt.Errorf("%s: unknown match list kind %d", origin, int(kind))
	}
	l := &List{origin: origin, kind: kind, parent: parent, utf8: opts.UTF8, literal: value}
	if err := l.parse(value, false, 0, opts); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// parse adds the patterns of one list text (the parameter value or one
// logical line of an included file). negate is the "!" in front of the file
// the text came from: Postfix prepends it to every pattern of the file.
func (l *List) parse(text string, negate bool, depth int, opts maps.Options) error {
	for _, tok := range config.SplitList(text) {
		if strings.HasPrefix(tok, "#") {
			// Postfix 3.8 and later stop at such a token with this warning;
			// 3.7 took "#" and what follows as patterns. Neither is what the
			// writer meant, and a silently shortened access list can fail
			// open (a lost "!"), so moat refuses it.
			return fmt.Errorf("%s: #comment after other text is not allowed: %q", l.origin, text)
		}
		neg := negate
		item := tok
		for strings.HasPrefix(item, "!") {
			neg = !neg
			item = item[1:]
		}
		if item == "" {
			return fmt.Errorf("%s: no pattern after '!'", l.origin)
		}
		switch {
		case item[0] == '/':
			if err := l.parseFile(item, neg, depth, opts); err != nil {
				return err
			}
		case isTable(item):
			if err := l.addTable(item, neg, opts); err != nil {
				return err
			}
		default:
			p, err := l.compile(item)
			if err != nil {
				return err
			}
			p.negate = neg
			l.pats = append(l.pats, p)
		}
	}
	return nil
}

// isTable is Postfix's MATCH_DICTIONARY(): a colon outside a leading "["
// makes "type:name". So an IPv6 address must be written in brackets; bare,
// "2001:db8::1" names a table of type "2001" (postconf(5), mynetworks).
func isTable(item string) bool {
	return item[0] != '[' && strings.Contains(item, ":")
}

// parseFile substitutes the patterns of a "/file/name" entry: one or more
// per logical line, "#" comment lines and blank lines skipped, a line that
// starts with whitespace continuing the previous one (Postfix's readllines).
func (l *List) parseFile(path string, negate bool, depth int, opts maps.Options) error {
	if depth >= maxFileDepth {
		return fmt.Errorf("%s: %s: files nested more than %d deep", l.origin, path, maxFileDepth)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		// Postfix substitutes a table whose every lookup fails, so the
		// daemon runs and every client gets 451; moat refuses to start.
		return fmt.Errorf("%s: open file %s: %w", l.origin, path, errors.Unwrap(err))
	}
	lines, orphans := maps.SourceLines(data)
	if len(orphans) > 0 {
		// Postfix warns and skips such a line; skipping a "!pattern"
		// would widen the list, so moat refuses the file.
		return fmt.Errorf("%s: %s, line %d: logical line must not start with whitespace", l.origin, path, orphans[0].Num)
	}
	for _, ln := range lines {
		if err := l.parse(ln.Text, negate, depth+1, opts); err != nil {
			return fmt.Errorf("%s, line %d: %w", path, ln.Num, err)
		}
	}
	return nil
}

// addTable opens a type:table pattern. The table's values are ignored: a
// name or address matches when it is a key (postconf(5), mydestination).
func (l *List) addTable(spec string, negate bool, opts maps.Options) error {
	t, err := maps.Open(spec, opts)
	if err != nil {
		return fmt.Errorf("%s: %s: %w", l.origin, spec, err)
	}
	l.tables = append(l.tables, t)
	l.pats = append(l.pats, pattern{negate: negate, table: t, spec: spec})
	return nil
}

// Close releases the list's tables.
func (l *List) Close() error {
	var errs []error
	for _, t := range l.tables {
		errs = append(errs, t.Close())
	}
	l.tables = nil
	return errors.Join(errs...)
}

// Origin is the parameter (or other source) the list came from.
func (l *List) Origin() string { return l.origin }

// Kind is what the list matches.
func (l *List) Kind() Kind { return l.kind }

// Empty reports whether the list has no patterns (an empty parameter value):
// such a list matches nothing, and callers such as resolve skip it.
func (l *List) Empty() bool { return len(l.pats) == 0 }

// String returns the list's text as given.
func (l *List) String() string { return l.literal }
