package proxymap

import (
	"strings"

	"moat/internal/config"
)

// proxyPrefix is DICT_TYPE_PROXY followed by its colon.
const proxyPrefix = "proxy:"

// stripProxy removes every leading "proxy:", as proxymap(8) canonicalizes
// both the approved names and the requested ones, so "proxy:proxy:x:y"
// is x:y.
func stripProxy(s string) string {
	for strings.HasPrefix(s, proxyPrefix) {
		s = s[len(proxyPrefix):]
	}
	return s
}

// approvedTables computes the tables a proxymap server may open from the
// value of proxy_read_maps (postconf(5)), by Postfix's rule (proxymap.c
// post_jail_init): split the expanded value on commas and whitespace with
// { } grouping; a "{ ... }" element stands for the first word inside it
// (an unclosed one is warned about and skipped); only words that begin
// with "proxy:" count, and what follows the prefix(es) is approved when it
// still has the form type:name. Everything else in the list — plain
// domains from $mydestination, restriction names from
// $smtpd_recipient_restrictions, tables without "proxy:" — is ignored:
// listing a table there is what approves it, and the default value does
// that for every parameter whose tables a jailed daemon may need.
func approvedTables(value, param string, warn func(format string, args ...any)) map[string]bool {
	ok := make(map[string]bool)
	for _, w := range config.SplitList(value) {
		if strings.HasPrefix(w, "{") {
			if !strings.HasSuffix(w, "}") {
				warn("bad %s parameter value: missing '}' in \"%s\"", param, w)
				continue
			}
			inner := config.SplitList(strings.TrimSpace(w[1 : len(w)-1]))
			if len(inner) == 0 {
				continue
			}
			w = inner[0]
		}
		if !strings.HasPrefix(w, proxyPrefix) {
			continue
		}
		name := stripProxy(w)
		if strings.Contains(name, ":") {
			ok[name] = true
		}
	}
	return ok
}
