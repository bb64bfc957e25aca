package cleanup

import (
	"fmt"
	"strings"

	"moat/internal/maps"
)

// Checks holds the content inspection tables of header_checks(5). Each
// list is searched in order and the first table with a match decides, as
// Postfix does for a parameter naming several tables. The caller resolves
// the defaults: mime_header_checks and nested_header_checks default to
// $header_checks, so normally they are the same tables.
type Checks struct {
	Header []maps.Table // header_checks
	MIME   []maps.Table // mime_header_checks
	Nested []maps.Table // nested_header_checks
	Body   []maps.Table // body_checks
}

// Action is a header_checks(5) action name, upper case.
type Action string

// The actions of header_checks(5) "ACTIONS". OK is accepted and, as in
// Postfix, means DUNNO.
const (
	ActBCC      Action = "BCC"
	ActDiscard  Action = "DISCARD"
	ActDunno    Action = "DUNNO"
	ActFilter   Action = "FILTER"
	ActHold     Action = "HOLD"
	ActIgnore   Action = "IGNORE"
	ActInfo     Action = "INFO"
	ActPass     Action = "PASS"
	ActPrepend  Action = "PREPEND"
	ActRedirect Action = "REDIRECT"
	ActReplace  Action = "REPLACE"
	ActReject   Action = "REJECT"
	ActStrip    Action = "STRIP"
	ActWarn     Action = "WARN"
)

// Verdict is the outcome of inspecting one header or body line.
type Verdict struct {
	Action Action // "" when nothing matched (or DUNNO/OK)
	Text   string // the action's argument, "" if none
	Table  string // which check list matched: header, mime, nested or body
}

// MIMEHeader reports whether a header name is one that mime_header_checks
// inspects in primary and nested header blocks: the MIME-Version and
// Content-* headers of RFC 2045.
func MIMEHeader(name string) bool {
	switch strings.ToLower(name) {
	case "mime-version", "content-type", "content-transfer-encoding",
		"content-description", "content-disposition", "content-id":
		return true
	}
	return false
}

// HeaderTable returns which check list inspects a header of class c
// (header_checks(5) "FILTERS WHILE RECEIVING MAIL").
func HeaderTable(c Class, header string) string {
	name, _, _ := splitHeader(header)
	switch {
	case c == Multipart || MIMEHeader(name):
		return "mime"
	case c == Nested:
		return "nested"
	}
	return "header"
}

// CheckHeader looks a logical header up in the list for its class. A
// table error is a temporary failure: the message must be deferred.
func (c *Checks) CheckHeader(class Class, header string) (Verdict, error) {
	which := HeaderTable(class, header)
	tabs := c.Header
	switch which {
	case "mime":
		tabs = c.MIME
	case "nested":
		tabs = c.Nested
	}
	return lookup(tabs, which, header)
}

// CheckBody looks a body line up in body_checks. Empty lines are never
// looked up (header_checks(5) BUGS).
func (c *Checks) CheckBody(line string) (Verdict, error) {
	if line == "" {
		return Verdict{}, nil
	}
	return lookup(c.Body, "body", line)
}

func lookup(tabs []maps.Table, which, key string) (Verdict, error) {
	for _, t := range tabs {
		v, ok, err := t.Lookup(key)
		if err != nil {
			return Verdict{}, fmt.Errorf("%s_checks lookup: %w", which, err)
		}
		if !ok {
			continue
		}
		act, text := ParseAction(v)
		if act == ActDunno {
			act = ""
		}
		return Verdict{Action: act, Text: text, Table: which}, nil
	}
	return Verdict{}, nil
}

// ParseAction splits a table result into its action, upper-cased (action
// names are case insensitive), and the text after it. "OK" is DUNNO, for
// backwards compatibility (header_checks(5) DUNNO). An unknown action is
// returned as is; the caller warns about it and ignores it, as Postfix
// does.
func ParseAction(v string) (Action, string) {
	v = strings.TrimLeft(v, " \t")
	word, text := v, ""
	if i := strings.IndexAny(v, " \t"); i >= 0 {
		word, text = v[:i], strings.TrimLeft(v[i:], " \t")
	}
	a := Action(strings.ToUpper(word))
	if a == "OK" {
		a = ActDunno
	}
	return a, text
}

// Known reports whether a is an action this package implements.
func (a Action) Known() bool {
	switch a {
	case ActBCC, ActDiscard, ActDunno, ActFilter, ActHold, ActIgnore, ActInfo, ActPass,
		ActPrepend, ActRedirect, ActReplace, ActReject, ActStrip, ActWarn, "":
		return true
	}
	return false
}

// LogName is the word Postfix logs for an action ("warning" for WARN).
func (a Action) LogName() string {
	if a == ActWarn {
		return "warning"
	}
	return strings.ToLower(string(a))
}

// Printable replaces bytes that are not printable ASCII with '?', as
// Postfix does before logging message content (a folded header's newlines
// included).
func Printable(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < ' ' || c >= 0x7f {
			b[i] = '?'
		}
	}
	return string(b)
}
