package postfix

import (
	"strings"

	"moat/internal/config"
)

// TableRef is one lookup table a configuration names, with where: the
// parameter (and master.cf service, if an override names it).
type TableRef struct {
	Spec  string // "type:name"
	Param string // parameter whose value names it
	Where string // "" for main.cf, else "master.cf service NAME/TYPE"
}

// skipTableParam reports the map-list parameters whose values are not tables to
// open: proxy_read_maps and proxy_write_maps list what proxymap(8) may
// open on clients' behalf (postconf(5)), including plain parameter values
// such as $mydestination.
func skipTableParam(name string) bool {
	return name == "proxy_read_maps" || name == "proxy_write_maps"
}

// restrictionSkipsArg reports restrictions whose next word is an argument that is
// not a lookup table even when it contains a colon (postconf(5),
// check_policy_service takes "inet:host:port" or "unix:path").
func restrictionSkipsArg(word string) bool {
	switch word {
	case "check_policy_service":
		return true
	}
	return false
}

// RestrictionTables returns the type:name tables a restriction list names
// (postconf(5) "check_*_access type:table" and the maps other restrictions
// take): every word with a "type:" prefix, except the argument of
// check_policy_service, which names a socket. classes are the
// smtpd_restriction_classes names, whose values are restriction lists too;
// a word naming one is returned in names so the caller can follow it.
func RestrictionTables(value string, classes map[string]bool) (tables, names []string) {
	words := config.SplitList(value)
	for i := 0; i < len(words); i++ {
		w := unbrace(words[i])
		if restrictionSkipsArg(w) {
			i++
			continue
		}
		if classes[w] {
			names = append(names, w)
			continue
		}
		if isTableSpec(w) {
			tables = append(tables, w)
		}
	}
	return tables, names
}

// MapListTables returns the type:name words of a map-list value; words
// without a type (Postfix treats some as files or domains in list
// parameters) are left to config's own validation.
func MapListTables(value string) []string {
	var out []string
	for _, w := range config.SplitList(value) {
		if w = unbrace(w); isTableSpec(w) {
			out = append(out, w)
		}
	}
	return out
}

// isTableSpec reports whether w looks like "type:name": a lower-case
// alphanumeric type (dict types are such words, DATABASE_README) then a
// colon. An IPv6 address or a host:port in a restriction list does not.
func isTableSpec(w string) bool {
	i := strings.IndexByte(w, ':')
	if i <= 0 || i == len(w)-1 {
		return false
	}
	for _, c := range w[:i] {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return w[0] >= 'a' && w[0] <= 'z'
}

// unbrace removes the { } that group a word holding spaces or commas
// (postconf(5): "{ text }" in lists, Postfix 3.0 and later).
func unbrace(w string) string {
	if len(w) >= 2 && w[0] == '{' && w[len(w)-1] == '}' {
		return strings.TrimSpace(w[1 : len(w)-1])
	}
	return w
}

// ListTables returns the tables in a plain list parameter (mydestination,
// relay_domains, mynetworks, ...: postconf(5) lets such lists name
// "type:table"). Only words whose type is one of Postfix's dictionary types
// (DATABASE_README) count, since other list values may hold colons.
func ListTables(value string) []string {
	var out []string
	for _, w := range MapListTables(value) {
		if postfixDictType(w[:strings.IndexByte(w, ':')]) {
			out = append(out, w)
		}
	}
	return out
}

func postfixDictType(t string) bool {
	switch t {
	case "btree", "cdb", "cidr", "dbm", "environ", "fail", "hash", "inline",
		"internal", "ldap", "lmdb", "memcache", "mongodb", "mysql", "netinfo",
		"nis", "nisplus", "pcre", "pgsql", "pipemap", "proxy", "randmap",
		"regexp", "sdbm", "socketmap", "sqlite", "static", "tcp", "texthash",
		"unionmap", "unix":
		return true
	}
	return false
}
