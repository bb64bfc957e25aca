package rewrite

import (
	"bytes"
	"strings"
)

// HeaderContext is the address rewriting context cleanup(8) applies to a
// message's headers (postconf(5) local_header_rewrite_clients,
// remote_header_rewrite_domain; ADDRESS_REWRITING_README "To rewrite
// message headers or not, or to label as invalid"): local submissions and
// clients that match local_header_rewrite_clients get the local context,
// every other SMTP client the remote one.
type HeaderContext int

const (
	// HeaderLocal: an unqualified header address gets @$myorigin and
	// .$mydomain, then the canonical maps and masquerading apply.
	HeaderLocal HeaderContext = iota
	// HeaderRemote: the same with $remote_header_rewrite_domain in place
	// of both; when that is empty, Postfix rewrites no header at all.
	HeaderRemote
)

// Header address classes, from Postfix's header_opts.c: which message
// headers hold sender and which recipient addresses (canonical_classes
// header_sender / header_recipient). Resent-Reply-To is a recipient header
// there, and so it is here.
var (
	senderHeaders = []string{"disposition-notification-to", "errors-to", "from", "mail-followup-to", "reply-to", "resent-from", "resent-sender", "return-receipt-to", "sender"}
	rcptHeaders   = []string{"apparently-to", "bcc", "cc", "resent-bcc", "resent-cc", "resent-reply-to", "resent-to", "to"}
)

// headerClass says whether a header name is in the sender class, the
// recipient class, or neither.
func headerClass(name string) (sender, rcpt bool) {
	n := strings.ToLower(strings.TrimRight(name, " \t"))
	for _, h := range senderHeaders {
		if n == h {
			return true, false
		}
	}
	for _, h := range rcptHeaders {
		if n == h {
			return false, true
		}
	}
	return false, false
}

// maxHeaderLine is RFC 5322 §2.1.1's limit on a line, CRLF excluded: a
// rewritten address that would push a line past it starts a new folded
// line instead.
const maxHeaderLine = 998

// HeaderFunc returns the function cleanup applies to each primary header
// in context ctx, or nil when headers are not rewritten at all (the remote
// context with remote_header_rewrite_domain empty, Postfix's default).
func (r *Rewriter) HeaderFunc(ctx HeaderContext) func(header string) (string, error) {
	if r == nil || (ctx == HeaderRemote && r.remoteDomain == "") {
		return nil
	}
	return func(h string) (string, error) { return r.Header(ctx, h) }
}

// Header rewrites the addresses in one logical header (name, colon,
// value; folds as "\n" plus white space), as cleanup_rewrite_sender() and
// cleanup_rewrite_recip() do: each address is canonicalized in ctx
// (append_at_myorigin, append_dot_mydomain, swap_bangpath,
// allow_percent_hack), then mapped through the canonical tables whose
// classes include the header's class, then masqueraded when
// masquerade_classes does. A header outside both classes, or one whose
// value cannot be read as an address list, is returned unchanged.
//
// Only the bytes of a changed address are replaced: display names,
// comments, white space and folding stay as written (Postfix regenerates
// the whole header from its tokens once anything changed). A line pushed
// past 998 bytes is folded before the element that grew.
//
// A non-nil error (an *Error) is a table lookup failure: the message must
// not be accepted now.
func (r *Rewriter) Header(ctx HeaderContext, h string) (string, error) {
	colon := strings.IndexByte(h, ':')
	if colon <= 0 {
		return h, nil
	}
	sender, rcpt := headerClass(h[:colon])
	if !sender && !rcpt {
		return h, nil
	}
	v := h[colon+1:]
	spans, ok := findAddrs(v, r.tokenLimit)
	if !ok || len(spans) == 0 {
		return h, nil
	}
	b := make([]byte, 0, len(h)+64)
	b = append(b, h[:colon+1]...)
	// lineStart is where the current output line starts, nl the next
	// line break in v at or after the current address: both move
	// forward only, so a header of many addresses costs linear time.
	lineStart := 0
	nl := -1
	write := func(s string) {
		if i := strings.LastIndexByte(s, '\n'); i >= 0 {
			lineStart = len(b) + i + 1
		}
		b = append(b, s...)
	}
	prev := 0
	changed := false
	for _, s := range spans {
		orig := s.local
		if s.hasAt {
			orig += "@" + s.domain
		}
		a, err := r.headerAddr(ctx, sender, s)
		if err != nil {
			return h, err
		}
		if a == orig {
			continue
		}
		changed = true
		ext := quoteAddr(a)
		if strings.HasPrefix(ext, "@") {
			// An empty local part stays visible as a quoted string.
			ext = `""` + ext
		}
		write(v[prev:s.elemStart])
		if nl < s.end {
			if i := strings.IndexByte(v[s.end:], '\n'); i >= 0 {
				nl = s.end + i
			} else {
				nl = len(v)
			}
		}
		line := b[lineStart:]
		grown := len(line) + (s.start - s.elemStart) + len(ext) + (nl - s.end)
		if trimmed := bytes.TrimRight(line, " \t"); grown > maxHeaderLine && bytes.HasSuffix(trimmed, []byte(",")) {
			// The white space after the list comma becomes a
			// fold, so the grown address starts a new line.
			b = append(b[:lineStart+len(trimmed)], "\n\t"...)
			lineStart = len(b) - 1
		}
		write(v[s.elemStart:s.start])
		b = append(b, ext...)
		prev = s.end
	}
	if !changed {
		return h, nil
	}
	b = append(b, v[prev:]...)
	return string(b), nil
}

// headerAddr rewrites one header address, in internal form.
func (r *Rewriter) headerAddr(ctx HeaderContext, sender bool, s addrSpan) (string, error) {
	a := r.canonTree(ctx, s)
	if r.noMaps {
		return a, nil
	}
	var err error
	if sender {
		if r.senderHdr {
			if a, err = r.map11(r.senderCanon, a); err != nil {
				return a, err
			}
		}
		if r.canonHdrFrom {
			if a, err = r.map11(r.canonical, a); err != nil {
				return a, err
			}
		}
		if r.masq.hdrSender {
			return r.masq.apply(a)
		}
		return a, nil
	}
	if r.rcptHdr {
		if a, err = r.map11(r.rcptCanon, a); err != nil {
			return a, err
		}
	}
	if r.canonHdrTo {
		if a, err = r.map11(r.canonical, a); err != nil {
			return a, err
		}
	}
	if r.masq.hdrRcpt {
		return r.masq.apply(a)
	}
	return a, nil
}

// canonTree is trivial-rewrite's rewrite_tree() for one header address in
// the local or remote context: a bang path (host!user) becomes user@host
// (swap_bangpath), user%host becomes user@host (allow_percent_hack), a
// bare user gets @origin (append_at_myorigin), user@host gets .domain
// (append_dot_mydomain), and a trailing dot is dropped. In the remote
// context origin and domain are both remote_header_rewrite_domain.
func (r *Rewriter) canonTree(ctx HeaderContext, s addrSpan) string {
	origin, domain := r.canon.myorigin, r.canon.mydomain
	if ctx == HeaderRemote {
		origin, domain = r.remoteDomain, r.remoteDomain
	}
	local, dom, hasAt := s.local, s.domain, s.hasAt
	if local == "" && !hasAt {
		// `""`, the empty address, is left alone (rewrite_tree).
		return ""
	}
	if !hasAt {
		// A bang or percent at either end would leave an empty part:
		// such an address is qualified like any other.
		bang := strings.IndexByte(local, '!')
		pct := strings.LastIndexByte(local, '%')
		switch {
		case r.swapBang && !s.quoted && bang > 0 && bang < len(local)-1:
			local, dom, hasAt = local[bang+1:], local[:bang], true
		case r.percentHack && !s.quoted && pct > 0 && pct < len(local)-1:
			local, dom, hasAt = local[:pct], local[pct+1:], true
		case r.canon.atOrigin && origin != "":
			dom, hasAt = origin, true
		}
	}
	if !hasAt {
		return local
	}
	if r.canon.dotDomain && domain != "" && dom != "" &&
		!strings.Contains(dom, "[") && !strings.Contains(dom, ".") {
		dom += "." + domain
	}
	if n := len(dom); n > 1 && dom[n-1] == '.' && dom[n-2] != '.' {
		dom = dom[:n-1]
	}
	return local + "@" + dom
}
