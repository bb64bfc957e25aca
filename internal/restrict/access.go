package restrict

import (
	"fmt"
	"strings"

	"moat/internal/config"
	"moat/internal/maps"
)

// tableResult is check_table_result(): an access(5) value (or a policy
// server's action) turned into a verdict. datum is what was looked up,
// for warnings.
func (e *eval) tableResult(table, value, datum, rn, rc, defACL string) status {
	cmd, text, _ := strings.Cut(value, " ")
	if i := strings.IndexByte(cmd, '\t'); i >= 0 {
		cmd, text = value[:i], value[i+1:]
	}
	text = strings.TrimLeft(text, " \t")
	upper := strings.ToUpper(cmd)
	switch upper {
	case "DUNNO":
		return dunno
	case "REJECT":
		dsn, t := splitDSN("5.7.1", text)
		if t == "" {
			t = "Access denied"
		}
		return e.reject(false, e.l.p.accessReject, dsnFix(dsn, rc), "<%s>: %s rejected: %s", rn, rc, t)
	case "DEFER":
		dsn, t := splitDSN("4.7.1", text)
		if t == "" {
			t = "Access denied"
		}
		return e.reject(false, e.l.p.accessDefer, dsnFix(dsn, rc), "<%s>: %s rejected: %s", rn, rc, t)
	case "WARN":
		e.whatsup("warn", text)
		return dunno
	case "INFO":
		e.whatsup("info", text)
		return dunno
	case "FILTER":
		if !e.canDelegate(table, "FILTER") {
			return dunno
		}
		switch {
		case text == "":
			e.l.warn("access table %s entry \"%s\" has FILTER entry without value", table, datum)
		case !strings.Contains(text, ":"):
			e.l.warn("access table %s entry \"%s\" requires transport:destination", table, datum)
		default:
			e.action("filter", fmt.Sprintf("<%s>: %s triggers FILTER %s", rn, rc, text))
			e.d.Filter = text
		}
		return dunno
	case "HOLD":
		if !e.canDelegate(table, "HOLD") {
			return dunno
		}
		if text == "" {
			text = "triggers HOLD action"
		}
		e.action("hold", fmt.Sprintf("<%s>: %s %s", rn, rc, text))
		e.d.Hold = true
		return dunno
	case "DISCARD":
		if !e.canDelegate(table, "DISCARD") {
			return dunno
		}
		if text == "" {
			text = "triggers DISCARD action"
		}
		e.action("discard", fmt.Sprintf("<%s>: %s %s", rn, rc, text))
		e.d.Discard = true
		e.discard = true
		return permitted
	case "REDIRECT":
		if !e.canDelegate(table, "REDIRECT") {
			return dunno
		}
		if !strings.Contains(text, "@") {
			e.l.warn("access table %s entry \"%s\" requires user@domain target", table, datum)
			return dunno
		}
		e.action("redirect", fmt.Sprintf("<%s>: %s triggers REDIRECT %s", rn, rc, text))
		e.d.Redirect = text
		return dunno
	case "BCC":
		// Postfix's BCC action (3.0) needs cleanup to add a recipient
		// after the fact; moat's smtpd cannot yet, and says so.
		e.l.warn("access table %s entry \"%s\": action BCC is not supported by this version of moat; entry ignored", table, datum)
		return dunno
	case "DEFER_IF_PERMIT":
		dsn, t := splitDSN("4.7.1", text)
		if t == "" {
			t = "Service unavailable"
		}
		e.deferIfPermit(450, dsnFix(dsn, rc), "<%s>: %s rejected: %s", rn, rc, t)
		return dunno
	case "DEFER_IF_REJECT":
		dsn, t := splitDSN("4.7.1", text)
		if t == "" {
			t = "Service unavailable"
		}
		e.deferIfReject(450, dsnFix(dsn, rc), "<%s>: %s rejected: %s", rn, rc, t)
		return dunno
	case "PREPEND":
		if !e.notInClientHelo(table, "PREPEND") {
			return dunno
		}
		if text == "" || !isHeader(text) {
			e.l.warn("access table %s entry \"%s\" requires header: text", table, datum)
			return dunno
		}
		e.d.Prepend = append(e.d.Prepend, text)
		return dunno
	}
	if value != "" && strings.Trim(value, "0123456789") == "" {
		// an all-numeric result (a time stamp from POP-before-SMTP)
		return permitted
	}
	if len(cmd) == 3 && text != "" && (cmd[0] == '4' || cmd[0] == '5') && isDigit(cmd[1]) && isDigit(cmd[2]) {
		code := int(cmd[0]-'0')*100 + int(cmd[1]-'0')*10 + int(cmd[2]-'0')
		dsn, t := splitDSN(string(cmd[0])+".7.1", text)
		if t == "" {
			t = "Access denied"
		}
		return e.reject(false, code, dsnFix(dsn, rc), "<%s>: %s rejected: %s", rn, rc, t)
	}
	if upper == "OK" || upper == "RELAY" {
		return permitted
	}
	if strings.Contains(value, ":") {
		e.l.warn("access table %s has entry with lookup table: %s", table, value)
		e.l.warn("do not specify lookup tables inside SMTPD access maps")
		e.l.warn("define a restriction class and specify its name instead.")
		return e.configError()
	}
	if e.recursion > 100 {
		e.l.warn("access table %s entry %s causes unreasonable recursion", table, value)
		return e.configError()
	}
	list := config.SplitList(value)
	if len(list) == 0 {
		e.l.warn("access table %s entry %s has empty value", table, value)
		return permitted
	}
	return e.generic(list, rn, rc, defACL)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// isHeader is is_header(): "Name:" with a printable, colon-free name.
func isHeader(s string) bool {
	name, _, ok := strings.Cut(s, ":")
	if !ok || name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// action records a HOLD, DISCARD, FILTER or REDIRECT's log text (Postfix's
// "<addr>: Sender address triggers HOLD action") in the Decision's Reason,
// for smtpd to log with the transaction; a Standalone session logs it
// here, when the restriction fires, as smtpd_check does.
func (e *eval) action(kind, text string) {
	e.d.Reason = text
	if e.s.Standalone {
		e.whatsup(kind, text)
	}
}

// canDelegate is can_delegate_action(): actions for cleanup exist only
// inside a mail transaction.
func (e *eval) canDelegate(table, action string) bool {
	return e.notInClientHelo(table, action)
}

// notInClientHelo is not_in_client_helo(): with smtpd_delay_reject = no a
// client or HELO restriction runs outside any transaction, so an action
// for the message is skipped (the smtpd_check test program skips the
// test).
func (e *eval) notInClientHelo(table, action string) bool {
	if e.s.Standalone || e.sender != nil {
		return true
	}
	e.l.warn("access table %s: with smtpd_delay_reject=no, action %s is always skipped in client or helo restrictions", table, action)
	return false
}

// table returns an access table opened by New, or opens one named inside
// an access map's result (Postfix refuses that: tables are opened before
// the jail).
func (e *eval) table(spec string) maps.Table {
	return e.l.tables[spec]
}

// lookupFailed logs a failed access lookup and answers 451 4.3.5, as
// Postfix 3.7 does for a table that cannot be read.
func (e *eval) lookupFailed(table, key, rn, rc string, err error) status {
	e.l.warn("%s lookup error for \"%s\"", table, key)
	_ = err
	return e.tableError(rn, rc)
}

// clientAccess is check_namadr_access(): the client name and its parent
// domains, then the address and its networks.
func (e *eval) clientAccess(spec, name, rn, rc, defACL string) status {
	t := e.table(spec)
	if t == nil {
		return e.unopened(spec)
	}
	addr := addrText(e.v.ClientAddr)
	r, err := maps.LookupClient(t, strings.ToLower(name), addr, e.l.access)
	if err != nil {
		return e.lookupFailed(spec, name, rn, rc, err)
	}
	if !r.Found {
		return dunno
	}
	return e.tableResult(spec, r.Value, r.Key, rn, rc, defACL)
}

// domainAccess is check_domain_access().
func (e *eval) domainAccess(spec, domain, rn, rc, defACL string) status {
	st, _ := e.domainAccessF(spec, domain, rn, rc, defACL)
	return st
}

// domainAccessF also reports whether the table had the name (a DUNNO
// found still ends a search).
func (e *eval) domainAccessF(spec, domain, rn, rc, defACL string) (status, bool) {
	t := e.table(spec)
	if t == nil {
		return e.unopened(spec), true
	}
	r, err := maps.LookupDomain(t, strings.ToLower(domain), e.l.access)
	if err != nil {
		return e.lookupFailed(spec, domain, rn, rc, err), true
	}
	if !r.Found {
		return dunno, false
	}
	return e.tableResult(spec, r.Value, domain, rn, rc, defACL), true
}

// addrAccessF is check_addr_access(): an address and its shorter
// networks.
func (e *eval) addrAccessF(spec, addr, rn, rc, defACL string) (status, bool) {
	t := e.table(spec)
	if t == nil {
		return e.unopened(spec), true
	}
	r, err := maps.LookupClient(t, "", addr, e.l.access)
	if err != nil {
		return e.lookupFailed(spec, addr, rn, rc, err), true
	}
	if !r.Found {
		return dunno, false
	}
	return e.tableResult(spec, r.Value, addr, rn, rc, defACL), true
}

// exactAccess is check_access(): one key, no partial forms.
func (e *eval) exactAccess(spec, key, rn, rc, defACL string) status {
	t := e.table(spec)
	if t == nil {
		return e.unopened(spec)
	}
	v, ok, err := t.Lookup(strings.ToLower(key))
	if err != nil {
		return e.lookupFailed(spec, key, rn, rc, err)
	}
	if !ok {
		return dunno
	}
	return e.tableResult(spec, v, key, rn, rc, defACL)
}

// mailAccess is check_mail_access(): the address in access(5) order; an
// OK for a source-routed recipient counts as DUNNO.
func (e *eval) mailAccess(spec, addr, rn, rc, defACL string) status {
	t := e.table(spec)
	if t == nil {
		return e.unopened(spec)
	}
	a, err := e.resolveAddr(addr)
	if err != nil {
		return e.dictRetry(addr)
	}
	r, err := maps.LookupAddress(t, a.canon, e.l.access)
	if err != nil {
		return e.lookupFailed(spec, addr, rn, rc, err)
	}
	if !r.Found {
		return dunno
	}
	st := e.tableResult(spec, r.Value, addr, rn, rc, defACL)
	if st == permitted && !e.l.p.untrustedRoute && a.routed && rc == classRecipient {
		return dunno
	}
	return st
}

// unopened answers a table named only inside an access map's result.
func (e *eval) unopened(spec string) status {
	e.l.warn("table %s is not named in main.cf or master.cf; tables must be opened at start-up (define a restriction class)", spec)
	return e.configError()
}
