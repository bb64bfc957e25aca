// Package maps implements Postfix lookup tables ("type:name", see
// DATABASE_README and the *_table(5) manuals) behind one interface, so every
// caller — restrictions, aliases, header checks, postmap — sees the same
// semantics: key folding, pattern versus fixed tables, and temporary errors.
package maps

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// Table is an open lookup table.
type Table interface {
	// Lookup returns the value stored for key. found is false when the key
	// is absent. A non-nil error is a temporary failure (Postfix's
	// DICT_ERR_RETRY): callers defer the mail (451 4.3.0) instead of
	// treating the key as absent.
	Lookup(key string) (value string, found bool, err error)
	// Pattern reports whether the table matches patterns (regexp, pcre,
	// cidr) rather than exact keys. access(5): a pattern table is queried
	// once with the whole string, never with the partial keys (parent
	// domains, "user@", shorter network prefixes) tried on fixed tables.
	Pattern() bool
	// Close releases the table's resources.
	Close() error
}

// Options control how a table is opened.
type Options struct {
	// Fold lowercases keys of fixed-string tables before lookup, Postfix's
	// DICT_FLAG_FOLD_FIX, which every Postfix daemon and `postmap -q` use
	// unless told otherwise (`postmap -f`).
	Fold bool
	// UTF8 folds keys with full Unicode case folding instead of ASCII
	// only: Postfix does so when smtputf8_enable = yes (the default from
	// compatibility_level 1 on, so moat's default). Daemons and postmap
	// must agree on it or non-ASCII keys are missed.
	UTF8 bool
	// TrustedUIDs lists the owners besides root that a table file may have
	// (mail_owner's uid). A table owned by anyone else, or writable by group
	// or others, is refused: a writer could otherwise change access policy.
	TrustedUIDs []int
	// Warn receives the non-fatal problems Postfix logs as warnings: a
	// malformed texthash line, a duplicate key, an index older than its
	// source file. nil writes them to standard error, so a command-line
	// tool shows them; daemons route them to the mail log.
	Warn func(msg string)
	// ProxySocket is the proxymap(8) service's UNIX socket. When set,
	// "proxy:TYPE:NAME" tables are asked of that server, which is how a
	// daemon in a chroot jail reaches tables outside it (the passwd file)
	// and how many processes share one open table. A relative path is
	// resolved at each connect against the working directory, so
	// "private/proxymap" works both before and after a daemon chroots
	// into the queue directory. Empty opens the inner table directly
	// (postmap -q, tests, daemons that are not jailed).
	ProxySocket string
}

// warnf reports a non-fatal problem through Options.Warn.
func (o Options) warnf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if o.Warn != nil {
		o.Warn(msg)
		return
	}
	fmt.Fprintf(os.Stderr, "warning: %s\n", msg)
}

// DefaultOptions are what a daemon uses when opening a table from main.cf.
func DefaultOptions() Options { return Options{Fold: true} }

// ErrUnsupported is returned for a table type moat does not implement.
var ErrUnsupported = errors.New("unsupported dictionary type")

// Types lists the table types Open understands, for error messages and
// `postconf -m`.
var Types = []string{
	"btree", "cdb", "cidr", "environ", "fail", "hash", "inline", "lmdb", "pcre",
	"proxy", "regexp", "static", "texthash", "unix",
}

// Split parses "type:name". The name may itself contain colons
// (inline:{ a=b }, proxy:hash:/x).
func Split(spec string) (typ, name string, err error) {
	i := strings.IndexByte(spec, ':')
	if i <= 0 {
		return "", "", fmt.Errorf("need dictionary type:name, got %q", spec)
	}
	return spec[:i], spec[i+1:], nil
}

// Open opens the table named by spec ("type:name").
func Open(spec string, opts Options) (Table, error) {
	typ, name, err := Split(spec)
	if err != nil {
		return nil, err
	}
	switch typ {
	case "hash", "btree", "lmdb", "cdb":
		return openIndexed(typ, name, opts)
	case "texthash":
		return openTexthash(name, opts)
	case "regexp":
		return openRegexp(name, opts)
	case "pcre":
		return openPCRE(name, opts)
	case "cidr":
		return openCIDR(name, opts)
	case "inline":
		return openInline(name, opts)
	case "static":
		return openStatic(name, opts)
	case "unix":
		return openUnix(name, opts)
	case "fail":
		return openFail(name, opts)
	case "environ":
		return openEnviron(name, opts)
	case "proxy":
		return openProxy(name, opts)
	}
	return nil, fmt.Errorf("%w: %s", ErrUnsupported, spec)
}
