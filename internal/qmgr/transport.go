package qmgr

import (
	"strings"
	"unicode/utf8"
)

// route is a recipient's delivery: the transport (a master.cf service name
// in Postfix, "local", "smtp", "discard"...) and its next hop.
type route struct {
	transport string
	nexthop   string
}

// parseTransport splits a transport setting "transport:nexthop"
// (transport(5) RESULT FORMAT; local_transport, default_transport). An empty
// next hop becomes the recipient's domain, as trivial-rewrite(8) does for
// default_transport, so discard(8) and error(8) log the domain.
func parseTransport(value, domain string) route {
	value = strings.TrimSpace(value)
	name, nexthop, _ := strings.Cut(value, ":")
	if nexthop == "" {
		nexthop = domain
	}
	return route{transport: name, nexthop: nexthop}
}

// splitAddress splits a recipient in internal form at its last '@' (a
// quoted local part may contain '@'). An address without a domain is
// local-only: Postfix appends $myorigin before queueing, and mail that
// arrives without one anyway is taken as local.
func splitAddress(addr string) (local, domain string) {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[:i], addr[i+1:]
	}
	return addr, ""
}

// localUser returns the mailbox owner's name for a local part as local(8)
// looks it up: lowercased (local(8) "CASE FOLDING"), with the address
// extension removed at the first character of recipient_delimiter
// (postconf(5) recipient_delimiter: any one of the characters separates).
func localUser(localPart, delimiters string) (user, extension string) {
	user = strings.ToLower(localPart)
	if delimiters == "" {
		return user, ""
	}
	if i := strings.IndexAny(user, delimiters); i >= 0 {
		return user[:i], user[i+1:]
	}
	return user, ""
}

// maxUserLen is the longest name used as a directory name (NAME_MAX on
// Linux). Longer names are no user of this system.
const maxUserLen = 255

// safeUser reports whether user can be a directory name under
// mail_spool_directory without escaping it or confusing programs: not
// empty, ".", or "..", no '/', NUL or control characters, valid UTF-8, and
// no leading '-' (which command-line tools take for an option). Postfix
// refuses such names because no passwd entry has them; moat has no passwd
// check for Maildir delivery yet, so this check is what keeps a recipient
// like "../../etc" from choosing the directory.
func safeUser(user string) bool {
	if user == "" || user == "." || user == ".." || len(user) > maxUserLen {
		return false
	}
	if user[0] == '-' || !utf8.ValidString(user) {
		return false
	}
	for _, r := range user {
		if r == '/' || r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return true
}

// splitDSN splits an RFC 3463 status code off the front of text ("5.7.1
// no such user") as Postfix's dsn_split does for discard(8) and error(8)
// next hops; when text does not start with one, def is the status and text
// is kept whole.
func splitDSN(def, text string) (dsn, rest string) {
	code, after, _ := strings.Cut(text, " ")
	if validDSN(code) {
		return code, strings.TrimLeft(after, " ")
	}
	return def, text
}

// validDSN reports whether s is class.subject.detail with class 2, 4 or 5,
// a subject of 1-3 digits and a detail of 1-3 digits (RFC 3463 section 2).
func validDSN(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || strings.IndexByte("245", parts[0][0]) < 0 {
		return false
	}
	for _, p := range parts[1:] {
		if len(p) < 1 || len(p) > 3 || strings.Trim(p, "0123456789") != "" {
			return false
		}
	}
	return true
}
