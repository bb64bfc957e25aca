// Package rewrite is the address rewriting Postfix's cleanup(8) does
// before a message is queued: canonical_maps, sender_canonical_maps and
// recipient_canonical_maps (canonical(5)), then virtual_alias_maps
// expansion (virtual(5)) of every recipient, recursively, within
// virtual_alias_recursion_limit and virtual_alias_expansion_limit.
//
// Header addresses (From:, To: ... in the header_sender and
// header_recipient classes) are rewritten by Header, in the context
// local_header_rewrite_clients and remote_header_rewrite_domain choose
// (HeaderContextFor). Deliberate differences from Postfix's cleanup there:
//
//   - Only the bytes of a changed address are replaced; display names,
//     comments, white space and folds stay as written. Postfix regenerates
//     the whole header from its tokens once any address changed (white
//     space normalized, refolded at about 70 columns).
//   - A header moat's tokenizer cannot read with confidence (unterminated
//     quote, comment or domain literal, unpaired angle brackets, a
//     backslash outside quotes, control characters) is left whole, and so
//     is a list element that is not a clean address (a phrase without
//     angle brackets, white space or comments inside the address, a source
//     route). Postfix's tokenizer is lenient and rewrites what it finds.
//   - A header over header_address_token_limit tokens is left whole;
//     Postfix drops the tokens past the limit.
//   - Return-Path: is never rewritten (Postfix classes it as a sender
//     header, but message_drop_headers removes it by default).
package rewrite

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"moat/internal/config"
	"moat/internal/maps"
	"moat/internal/queue"
	"moat/internal/resolve"
)

// maxCanonRecursion is cleanup_map11's MAX_RECURSION: a canonical mapping
// is applied again to its own result at most this many times.
const maxCanonRecursion = 10

// Error is a rewriting failure that makes the message not acceptable now:
// a table lookup problem or a limit exceeded. Postfix's cleanup sets
// CLEANUP_STAT_WRITE for all of them, and smtpd answers "451 4.3.0 Error:
// queue file write error"; Msg is cleanup's warning text.
type Error struct {
	Msg string
	Err error // the lookup error, if any
}

// Error returns cleanup's warning text, with the lookup error if any, for
// the mail log.
func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

// Unwrap gives the table's error, so callers can test it with errors.Is.
func (e *Error) Unwrap() error { return e.Err }

// Rewriter holds the open tables. It is safe for concurrent use.
type Rewriter struct {
	senderCanon, rcptCanon, canonical, virtual *Maps
	// which envelope addresses each canonical list applies to
	// (sender_canonical_classes, recipient_canonical_classes,
	// canonical_classes).
	senderFrom, rcptTo, canonFrom, canonTo bool
	// the same for the header classes (header_sender, header_recipient)
	senderHdr, rcptHdr, canonHdrFrom, canonHdrTo bool
	propCanon, propVirtual                       bool
	// remoteDomain is remote_header_rewrite_domain; swapBang and
	// percentHack are swap_bangpath and allow_percent_hack, which the
	// header rewriting contexts apply (trivial-rewrite(8)).
	remoteDomain          string
	swapBang, percentHack bool
	// clients is local_header_rewrite_clients.
	clients *headerClients
	// tokenLimit is header_address_token_limit: a header with more
	// tokens is not rewritten.
	tokenLimit int

	find  *Finder
	canon canon
	masq  *masq

	recursion, expansion, addrLen, dupLimit int
	enableOrcpt                             bool
	// noMaps is receive_override_options = no_address_mappings: the
	// tables are not consulted (an after-queue content filter's first
	// pass leaves them to the re-injection, postconf(5)).
	noMaps bool

	res *resolve.Resolver
}

// New opens the tables main.cf names.
func New(cfg *config.Config, opts maps.Options) (*Rewriter, error) {
	r := &Rewriter{}
	if err := r.open(cfg, opts); err != nil {
		r.Close()
		return nil, fmt.Errorf("rewrite: %w", err)
	}
	return r, nil
}

func (r *Rewriter) open(cfg *config.Config, opts maps.Options) error {
	var err error
	if r.noMaps, err = OverrideOption(cfg, "no_address_mappings"); err != nil {
		return err
	}
	if r.res, err = resolve.New(cfg, opts); err != nil {
		return err
	}
	if r.find, err = NewFinder(cfg, r.res); err != nil {
		return err
	}
	for _, m := range []struct {
		dst   **Maps
		param string
	}{
		{&r.senderCanon, "sender_canonical_maps"},
		{&r.rcptCanon, "recipient_canonical_maps"},
		{&r.canonical, "canonical_maps"},
		{&r.virtual, "virtual_alias_maps"},
	} {
		if *m.dst, err = OpenMaps(cfg, m.param, opts); err != nil {
			return err
		}
	}
	var c classSet
	if c, err = readClasses(cfg, "sender_canonical_classes"); err != nil {
		return err
	}
	r.senderFrom, r.senderHdr = c.envFrom, c.hdrFrom
	if c, err = readClasses(cfg, "recipient_canonical_classes"); err != nil {
		return err
	}
	r.rcptTo, r.rcptHdr = c.envTo, c.hdrTo
	if c, err = readClasses(cfg, "canonical_classes"); err != nil {
		return err
	}
	r.canonFrom, r.canonTo, r.canonHdrFrom, r.canonHdrTo = c.envFrom, c.envTo, c.hdrFrom, c.hdrTo
	if r.masq, err = openMasq(cfg, opts); err != nil {
		return err
	}
	props, err := cfg.List("propagate_unmatched_extensions")
	if err != nil {
		return fmt.Errorf("propagate_unmatched_extensions: %w", err)
	}
	for _, p := range props {
		switch strings.ToLower(p) {
		case "canonical":
			r.propCanon = true
		case "virtual":
			r.propVirtual = true
		case "alias", "forward", "include", "generic":
			// local(8) and smtp(8) apply these, not cleanup.
		default:
			return fmt.Errorf("propagate_unmatched_extensions: unknown value %q", p)
		}
	}
	for _, b := range []struct {
		dst  *bool
		name string
	}{
		{&r.canon.atOrigin, "append_at_myorigin"}, {&r.canon.dotDomain, "append_dot_mydomain"},
		{&r.enableOrcpt, "enable_original_recipient"},
		{&r.swapBang, "swap_bangpath"}, {&r.percentHack, "allow_percent_hack"},
	} {
		if *b.dst, err = cfg.Bool(b.name); err != nil {
			return fmt.Errorf("%s: %w", b.name, err)
		}
	}
	r.canon.myorigin = r.find.MyOrigin
	if r.canon.mydomain, err = cfg.GetErr("mydomain"); err != nil {
		return fmt.Errorf("mydomain: %w", err)
	}
	if r.remoteDomain, err = cfg.GetErr("remote_header_rewrite_domain"); err != nil {
		return fmt.Errorf("remote_header_rewrite_domain: %w", err)
	}
	r.remoteDomain = strings.TrimSpace(r.remoteDomain)
	if r.clients, err = openHeaderClients(cfg, opts, r.res); err != nil {
		return err
	}
	for _, n := range []struct {
		dst  *int
		name string
	}{
		{&r.recursion, "virtual_alias_recursion_limit"},
		{&r.expansion, "virtual_alias_expansion_limit"},
		{&r.addrLen, "virtual_alias_address_length_limit"},
		{&r.dupLimit, "duplicate_filter_limit"},
		{&r.tokenLimit, "header_address_token_limit"},
	} {
		v, err := cfg.Int(n.name)
		if err != nil {
			return fmt.Errorf("%s: %w", n.name, err)
		}
		if v < 0 || v > 1<<30 {
			return fmt.Errorf("%s: value %d out of range", n.name, v)
		}
		*n.dst = int(v)
	}
	return nil
}

// classSet is which address classes a *_classes parameter lists.
type classSet struct{ envFrom, envTo, hdrFrom, hdrTo bool }

// readClasses reads canonical_classes, sender_canonical_classes,
// recipient_canonical_classes or masquerade_classes (postconf(5)).
func readClasses(cfg *config.Config, param string) (classSet, error) {
	var c classSet
	list, err := cfg.List(param)
	if err != nil {
		return c, fmt.Errorf("%s: %w", param, err)
	}
	for _, name := range list {
		switch strings.ToLower(name) {
		case "envelope_sender":
			c.envFrom = true
		case "envelope_recipient":
			c.envTo = true
		case "header_sender":
			c.hdrFrom = true
		case "header_recipient":
			c.hdrTo = true
		default:
			return c, fmt.Errorf("%s: unknown class %q", param, name)
		}
	}
	return c, nil
}

// OverrideOption reports whether receive_override_options (postconf(5))
// lists opt: no_address_mappings turns off canonical, masquerade and virtual
// alias mapping in cleanup, no_unknown_recipient_checks the unlisted
// recipient check in smtpd. A master.cf service sets it with -o, so cfg is
// the service's view.
func OverrideOption(cfg *config.Config, opt string) (bool, error) {
	list, err := cfg.List("receive_override_options")
	if err != nil {
		return false, fmt.Errorf("receive_override_options: %w", err)
	}
	for _, o := range list {
		if strings.EqualFold(o, opt) {
			return true, nil
		}
	}
	return false, nil
}

// Close releases the tables.
func (r *Rewriter) Close() error {
	if r == nil {
		return nil
	}
	var errs []error
	for _, m := range []*Maps{r.senderCanon, r.rcptCanon, r.canonical, r.virtual} {
		errs = append(errs, m.Close())
	}
	if r.res != nil {
		errs = append(errs, r.res.Close())
	}
	errs = append(errs, r.masq.close(), r.clients.close())
	return errors.Join(errs...)
}

// Envelope rewrites env's sender and recipients in place, in cleanup(8)'s
// order: each address canonicalized (append_at_myorigin,
// append_dot_mydomain), then the sender through sender_canonical_maps,
// canonical_maps and masquerading, each recipient through
// recipient_canonical_maps, canonical_maps, masquerading (when
// masquerade_classes has envelope_recipient) and then virtual_alias_maps
// expansion. Duplicate
// recipients are dropped as cleanup's duplicate filter does (same
// address, same original address and DSN attributes). A recipient whose
// address changed keeps the address the client gave in Orig (orig_to=,
// X-Original-To:) unless enable_original_recipient is off.
//
// A non-nil error (an *Error) means the message must not be accepted now
// (Postfix: CLEANUP_STAT_WRITE, "451 4.3.0 Error: queue file write
// error"); env is then left partly rewritten and must not be queued.
func (r *Rewriter) Envelope(env *queue.Envelope) error {
	if env.Sender != "" {
		s := r.canon.apply(env.Sender)
		var err error
		if r.senderFrom && !r.noMaps {
			if s, err = r.map11(r.senderCanon, s); err != nil {
				return err
			}
		}
		if r.canonFrom && !r.noMaps {
			if s, err = r.map11(r.canonical, s); err != nil {
				return err
			}
		}
		if r.masq.sender && !r.noMaps {
			if s, err = r.masq.apply(s); err != nil {
				return err
			}
		}
		env.Sender = s
	}
	out := make([]queue.Recipient, 0, len(env.Recipients))
	seen := map[string]bool{}
	for _, rc := range env.Recipients {
		orig := rc.Orig
		if orig == "" {
			orig = rc.Address
		}
		a := r.canon.apply(rc.Address)
		var err error
		if r.rcptTo && !r.noMaps {
			if a, err = r.map11(r.rcptCanon, a); err != nil {
				return err
			}
		}
		if r.canonTo && !r.noMaps {
			if a, err = r.map11(r.canonical, a); err != nil {
				return err
			}
		}
		if r.masq.rcpt && !r.noMaps {
			if a, err = r.masq.apply(a); err != nil {
				return err
			}
		}
		addrs := []string{a}
		if !r.virtual.Empty() && !r.noMaps {
			if addrs, err = r.map1n(r.virtual, a); err != nil {
				return err
			}
		}
		for _, x := range addrs {
			n := rc
			n.Address = x
			n.Orig = ""
			if x != orig && r.enableOrcpt {
				// enable_original_recipient = no: cleanup drops the
				// original address (no orig_to=, no X-Original-To:).
				n.Orig = orig
			}
			key := strings.ToLower(x)
			if r.enableOrcpt {
				key = strings.ToLower(rc.ORCPT + "\n" + strconv.Itoa(int(rc.Notify)) + "\n" + orig + "\n" + x)
			}
			if seen[key] {
				continue
			}
			if len(seen) < r.dupLimit {
				seen[key] = true
			}
			out = append(out, n)
		}
	}
	env.Recipients = out
	return nil
}

// mapAddr is mail_addr_map(3): find addr in m and turn the value into
// internal-form addresses — "@otherdomain" keeps the original local part
// (without the extension), each result is canonicalized, and an unmatched
// extension is propagated when propagate is set.
func (r *Rewriter) mapAddr(m *Maps, addr string, propagate bool) ([]string, bool, error) {
	f, ok, err := r.find.Find(m, addr)
	if err != nil || !ok {
		return nil, false, err
	}
	value := f.Value
	if strings.HasPrefix(value, "@") {
		local := addr
		if at := strings.LastIndexByte(addr, '@'); at >= 0 {
			local = addr[:at]
		}
		local = strings.TrimSuffix(local, f.Ext)
		value = quoteAddr(local + value)
	}
	var out []string
	for _, a := range splitAddrs(value) {
		a = r.canon.apply(unquoteAddr(a))
		if propagate {
			a = withExt(a, f.Ext)
		}
		out = append(out, a)
	}
	return out, true, nil
}

// map11 is cleanup_map11(): one-to-one rewriting, repeated on its own
// result until it maps an address to itself or finds nothing, at most
// maxCanonRecursion times.
func (r *Rewriter) map11(m *Maps, addr string) (string, error) {
	if m.Empty() || addr == "" {
		return addr, nil
	}
	for range maxCanonRecursion {
		res, ok, err := r.mapAddr(m, addr, r.propCanon)
		if err != nil {
			return addr, &Error{Msg: fmt.Sprintf("%s map lookup problem for %s -- message not accepted, try again later", m.Title, addr), Err: err}
		}
		if !ok || len(res) == 0 {
			return addr, nil
		}
		// A multi-valued canonical entry uses its first address
		// (Postfix warns "multi-valued ... entry").
		prev := addr
		addr = res[0]
		if strings.EqualFold(prev, addr) {
			return addr, nil
		}
	}
	return addr, &Error{Msg: fmt.Sprintf("unreasonable %s map nesting for %s -- message not accepted, try again later", m.Title, addr)}
}

// map1n is cleanup_map1n(): virtual alias expansion. Each address is
// looked up again until the tables have nothing for it or it expanded to
// itself (which ends the recursion for that address only); the list may
// grow to virtual_alias_expansion_limit addresses and each address be
// rewritten virtual_alias_recursion_limit times. Exceeding either, a
// result longer than virtual_alias_address_length_limit or a lookup
// failure refuses the message for now, as Postfix does.
func (r *Rewriter) map1n(m *Maps, addr string) ([]string, error) {
	argv := []string{addr}
	self := map[string]bool{} // addresses that expanded to themselves
	for i := 0; i < len(argv); i++ {
		if len(argv) > r.expansion {
			return []string{addr}, &Error{Msg: fmt.Sprintf("unreasonable %s map expansion size for %s -- message not accepted, try again later", m.Title, addr)}
		}
		for count := 0; ; count++ {
			if self[strings.ToLower(argv[i])] {
				break
			}
			if count >= r.recursion {
				return []string{addr}, &Error{Msg: fmt.Sprintf("unreasonable %s map nesting for %s -- message not accepted, try again later", m.Title, addr)}
			}
			res, ok, err := r.mapAddr(m, argv[i], r.propVirtual)
			if err != nil {
				return []string{addr}, &Error{Msg: fmt.Sprintf("%s map lookup problem for %s -- message not accepted, try again later", m.Title, addr), Err: err}
			}
			if !ok {
				break
			}
			lhs := argv[i]
			if len(res) == 0 {
				// A value with no address at all: Postfix's argv
				// would be empty too; drop the address.
				argv = slices.Delete(argv, i, i+1)
				i--
				break
			}
			for j, a := range res {
				if len(a) > r.addrLen {
					return []string{addr}, &Error{Msg: fmt.Sprintf("unreasonable %s result %.300s... -- message not accepted, try again later", m.Title, a)}
				}
				if j == 0 {
					argv[i] = a
				} else {
					argv = append(argv, a)
				}
				if strings.EqualFold(lhs, a) {
					self[strings.ToLower(lhs)] = true
				}
			}
		}
	}
	return argv, nil
}
